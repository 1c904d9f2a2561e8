SELECT objectId FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), BOX(270, -20, 20, 15)) = 1
