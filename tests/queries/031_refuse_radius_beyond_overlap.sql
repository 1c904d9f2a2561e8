-- refuse: larger than the overlap
SELECT COUNT(*) FROM Object o1, Object o2
WHERE DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < 0.1
