SELECT objectId, coord_ra FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), BOX(359, 30, 12, 10)) = 1
