SELECT STDDEV(coord_ra), VARIANCE(coord_ra) FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(266.4, -28.9, 12)) = 1
