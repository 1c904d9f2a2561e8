SELECT COUNT(*) FROM Object WHERE INTERSECTS(CIRCLE(coord_ra, coord_dec, 0.1), CIRCLE(10, 10, 1)) = 1
