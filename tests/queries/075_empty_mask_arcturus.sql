SELECT objectId, coord_ra FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(213.9153, 19.1824, 1.5)) = 1
