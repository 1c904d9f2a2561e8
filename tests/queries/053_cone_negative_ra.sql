SELECT COUNT(*) FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(-5, 40, 12)) = 1
