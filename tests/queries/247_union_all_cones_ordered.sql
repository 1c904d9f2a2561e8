-- order: ordered
SELECT objectId, coord_ra, coord_dec FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(0, 0, 5)) = 1
UNION ALL
SELECT objectId, coord_ra, coord_dec FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(359, 1, 5)) = 1
ORDER BY objectId
