-- order: ordered
SELECT band, COUNT(*), MIN(expMidptMJD) FROM CcdVisit GROUP BY band ORDER BY band
