-- refuse: a region is never inside a point
SELECT COUNT(*) FROM Object WHERE CONTAINS(CIRCLE(coord_ra, coord_dec, 1), POINT(10, 10)) = 1
