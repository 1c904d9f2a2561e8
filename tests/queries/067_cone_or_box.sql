SELECT objectId FROM Object
WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(10, 10, 5)) = 1
OR CONTAINS(POINT(coord_ra, coord_dec), BOX(200, 40, 8, 8)) = 1
