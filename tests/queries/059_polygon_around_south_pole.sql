SELECT objectId, coord_dec FROM Object
WHERE CONTAINS(POINT(coord_ra, coord_dec), POLYGON(0, -75, 120, -75, 240, -75)) = 1
