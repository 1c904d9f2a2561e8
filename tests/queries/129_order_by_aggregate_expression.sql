-- order: ordered
SELECT band, AVG(psfFlux) AS m FROM ForcedSource GROUP BY band ORDER BY MAX(psfFlux) - MIN(psfFlux), band
