SELECT COUNT(*) FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(266.4, -28.9, 20)) = 0
