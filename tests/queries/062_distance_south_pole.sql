SELECT objectId FROM Object WHERE DISTANCE(POINT(coord_ra, coord_dec), POINT(0, -90)) < 6
