SELECT COUNT(*) FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(0, 90, 25)) = 1
