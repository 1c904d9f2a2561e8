-- order: ordered
SELECT f.band, COUNT(*) AS n, AVG(f.psfFlux - o.r_psfFlux) AS d FROM Object o
JOIN ForcedSource f ON o.objectId = f.objectId GROUP BY f.band ORDER BY f.band
