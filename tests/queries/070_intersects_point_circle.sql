SELECT objectId FROM Object WHERE INTERSECTS(CIRCLE(100, 30, 6), POINT(coord_ra, coord_dec)) = 1
