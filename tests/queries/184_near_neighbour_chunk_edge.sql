SELECT o1.objectId AS a, o2.objectId AS b, DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) AS d
FROM Object o1, Object o2
WHERE CONTAINS(POINT(o1.coord_ra, o1.coord_dec), CIRCLE(270.101, -41.696, 0.5)) = 1
AND DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < 0.005
AND o1.objectId <> o2.objectId
