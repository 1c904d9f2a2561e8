SELECT objectId, COORD1(POINT(coord_ra, coord_dec)) AS ra, COORD2(POINT(coord_ra, coord_dec)) AS dec FROM Object
WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(150, -50, 4)) = 1
