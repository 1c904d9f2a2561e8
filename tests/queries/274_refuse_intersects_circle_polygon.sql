-- refuse: INTERSECTS of two regions (CIRCLE, POLYGON) is not supported
SELECT COUNT(*) FROM Object WHERE INTERSECTS(CIRCLE(coord_ra, coord_dec, 0.1), POLYGON(9, 9, 11, 9, 10, 11)) = 1
