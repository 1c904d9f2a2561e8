-- order: ordered
SELECT objectId FROM Object WHERE CONTAINS(POINT('ICRS', coord_ra, coord_dec), CIRCLE('GALACTIC', 0, 0, 5)) = 1 ORDER BY objectId
