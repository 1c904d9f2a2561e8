-- order: ordered
SELECT band, COUNT(DISTINCT objectId) AS objects, COUNT(DISTINCT ccdVisitId) AS visits, SUM(psfFlux) AS total
FROM ForcedSource GROUP BY band ORDER BY band
