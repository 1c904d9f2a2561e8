-- refuse: convex
SELECT COUNT(*) FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), POLYGON(10, 10, 20, 10, 12, 12, 20, 20, 10, 20)) = 1
