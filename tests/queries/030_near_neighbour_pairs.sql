SELECT o1.objectId, o2.objectId FROM Object AS o1 JOIN Object AS o2
ON CONTAINS(POINT(o1.coord_ra, o1.coord_dec), CIRCLE(o2.coord_ra, o2.coord_dec, 0.0165)) = 1
WHERE o1.objectId < o2.objectId
