SELECT COUNT(*) FROM Object
WHERE CONTAINS(POINT(coord_ra, coord_dec), POLYGON(250, -10, 285, -10, 285, -40, 250, -40)) = 1
