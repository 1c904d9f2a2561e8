SELECT objectId, coord_ra, coord_dec FROM Object
WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(359.9, 10, 9)) = 1
