SELECT COUNT(*), MIN(coord_dec) FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(0, 90, 90)) = 1
