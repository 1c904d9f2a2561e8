WITH good AS (SELECT ccdVisitId, band, seeing FROM CcdVisit WHERE seeing < 0.8)
SELECT band, COUNT(*) FROM good GROUP BY band
