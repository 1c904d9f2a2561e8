SELECT objectId, DISTANCE(POINT(coord_ra, coord_dec), POINT(266.4, -28.9)) AS d FROM Object
WHERE DISTANCE(POINT(coord_ra, coord_dec), POINT(266.4, -28.9)) < 3.5
