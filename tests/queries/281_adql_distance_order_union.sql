-- order: ordered
SELECT objectId, DISTANCE(POINT(coord_ra, coord_dec), POINT(270, -25)) AS d FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(270, -25, 2)) = 1
UNION ALL
SELECT objectId, DISTANCE(POINT(coord_ra, coord_dec), POINT(270, -25)) AS d FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(10, 10, 2)) = 1
ORDER BY d, objectId
