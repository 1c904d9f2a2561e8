SELECT COUNT(*) FROM Object WHERE 3 > DISTANCE(POINT(45, 20), POINT(coord_ra, coord_dec))
