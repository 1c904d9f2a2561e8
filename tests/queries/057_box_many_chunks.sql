SELECT COUNT(*), SUM(tract) FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), BOX(266.4, -28.9, 30, 20)) = 1
