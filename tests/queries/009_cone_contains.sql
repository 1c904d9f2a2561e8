SELECT COUNT(*) FROM Object o
WHERE CONTAINS(POINT('ICRS', o.coord_ra, o.coord_dec), CIRCLE('ICRS', 266.4, -28.9, 5)) = 1
