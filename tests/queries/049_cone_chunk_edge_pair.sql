SELECT objectId, coord_ra, coord_dec FROM Object
WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('ICRS', 270.101, -41.696, 0.05)) = 1
