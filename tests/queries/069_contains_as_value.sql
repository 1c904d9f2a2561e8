-- order: ordered
SELECT CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(266.4, -28.9, 10)) AS inside, COUNT(*) AS n
FROM Object GROUP BY CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(266.4, -28.9, 10)) ORDER BY inside
