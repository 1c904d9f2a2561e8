SELECT objectId, coord_ra, coord_dec FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(200, 90, 5)) = 1
