SELECT objectId, coord_dec FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), BOX(300, 80, 40, 8)) = 1
