-- order: ordered
SELECT v.band, COUNT(*) AS n, AVG(f.psfFlux) FROM Object o JOIN ForcedSource f ON o.objectId = f.objectId
JOIN CcdVisit v ON v.ccdVisitId = f.ccdVisitId WHERE o.coord_dec > 0 GROUP BY v.band ORDER BY v.band
