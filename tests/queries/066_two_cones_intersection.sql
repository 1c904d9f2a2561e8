SELECT objectId FROM Object
WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(266.4, -28.9, 6)) = 1
AND CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(270, -25, 6)) = 1
