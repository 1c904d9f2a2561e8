SELECT COUNT(*) FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), BOX(0, 0, 30, 20)) = 1
