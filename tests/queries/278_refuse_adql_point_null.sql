-- refuse: a coordinate is the constant NULL
SELECT objectId FROM Object WHERE CONTAINS(POINT(NULL, coord_dec), CIRCLE(10, 10, 1)) = 1
