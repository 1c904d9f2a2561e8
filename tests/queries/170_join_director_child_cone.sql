-- order: ordered
SELECT f.band, COUNT(*) AS n, AVG(f.psfFlux) FROM Object o JOIN ForcedSource f ON o.objectId = f.objectId
WHERE CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(266.4, -28.9, 10)) = 1 GROUP BY f.band ORDER BY f.band
