SELECT COUNT(*) FROM Source WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(266.4, -28.9, 5)) = 1
