-- refuse: larger than the overlap
SELECT COUNT(*) FROM Object o1 JOIN Object o2 ON CONTAINS(POINT(o1.coord_ra, o1.coord_dec), CIRCLE(o2.coord_ra, o2.coord_dec, 0.05)) = 1
