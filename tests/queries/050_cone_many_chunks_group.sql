-- order: ordered
SELECT refBand, COUNT(*) AS n, MIN(coord_dec), MAX(coord_ra) FROM Object
WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(266.4, -28.9, 15)) = 1
GROUP BY refBand ORDER BY refBand
