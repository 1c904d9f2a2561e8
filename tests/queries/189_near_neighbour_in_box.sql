SELECT o1.objectId, o2.objectId FROM Object o1, Object o2
WHERE CONTAINS(POINT(o1.coord_ra, o1.coord_dec), BOX(266.4, -28.9, 30, 30)) = 1
AND DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < 0.003
AND o1.objectId < o2.objectId
