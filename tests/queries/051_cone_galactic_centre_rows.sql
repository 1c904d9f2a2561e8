SELECT objectId, r_psfFlux FROM Object
WHERE DISTANCE(POINT(coord_ra, coord_dec), POINT(266.4, -28.9)) < 1.5
