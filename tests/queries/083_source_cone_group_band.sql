-- order: ordered
SELECT band, COUNT(*) AS n, AVG(psfFlux) FROM Source
WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(266.4, -28.9, 8)) = 1 GROUP BY band ORDER BY band
