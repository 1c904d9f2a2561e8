SELECT COUNT(*) FROM Object o1, Object o2
WHERE DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < 0.01
AND o1.objectId <> o2.objectId
