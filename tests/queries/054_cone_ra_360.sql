SELECT objectId FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(360, 60, 4)) = 1
