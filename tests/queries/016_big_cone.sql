SELECT COUNT(*), AVG(coord_dec) FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(100, 10, 70)) = 1
