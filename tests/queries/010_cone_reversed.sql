SELECT objectId, coord_ra, coord_dec FROM Object
WHERE 1 = CONTAINS(POINT(266.4, -28.9), CIRCLE(coord_ra, coord_dec, 4))
