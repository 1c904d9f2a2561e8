SELECT o1.objectId, o2.objectId FROM Object o1 JOIN Object o2
ON DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) <= 1.0 / 60
WHERE o1.objectId < o2.objectId
