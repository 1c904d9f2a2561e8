SELECT COUNT(*) FROM Object o1, Object o2
WHERE CONTAINS(POINT(o2.coord_ra, o2.coord_dec), CIRCLE(o1.coord_ra, o1.coord_dec, 0.002)) = 1 AND o1.objectId <> o2.objectId
