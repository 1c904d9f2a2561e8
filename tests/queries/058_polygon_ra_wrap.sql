SELECT objectId FROM Object
WHERE CONTAINS(POINT(coord_ra, coord_dec), POLYGON(350, -10, 10, -10, 10, 10, 350, 10)) = 1
