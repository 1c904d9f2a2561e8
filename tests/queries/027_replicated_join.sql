-- order: ordered
SELECT v.band, COUNT(*) AS n, AVG(v.seeing) AS seeing FROM ForcedSource f
JOIN CcdVisit v ON v.ccdVisitId = f.ccdVisitId GROUP BY v.band ORDER BY v.band
