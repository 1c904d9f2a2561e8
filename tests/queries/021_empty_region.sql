SELECT objectId FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(101.2872, -16.7161, 1)) = 1
