SELECT COUNT(*) FROM Object
WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), POLYGON('ICRS', 260, -35, 275, -35, 266, -20)) = 1
