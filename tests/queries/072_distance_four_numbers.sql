SELECT objectId, DISTANCE(coord_ra, coord_dec, 266.4, -28.9) AS d FROM Object
WHERE DISTANCE(coord_ra, coord_dec, 266.4, -28.9) < 2
