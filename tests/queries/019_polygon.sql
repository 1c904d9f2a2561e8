SELECT objectId FROM Object
WHERE CONTAINS(POINT(coord_ra, coord_dec), POLYGON(250, -40, 285, -40, 285, -10, 250, -10)) = 1
