SELECT objectId, coord_ra FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(0.5, 0.0, 12)) = 1
