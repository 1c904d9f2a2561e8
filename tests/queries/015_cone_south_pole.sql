SELECT objectId FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(123, -90, 30)) = 1
