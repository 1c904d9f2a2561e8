-- order: ordered
SELECT o1.objectId, COUNT(*) AS neighbours FROM Object o1 JOIN Object o2
ON DISTANCE(POINT(o1.coord_ra, o1.coord_dec), POINT(o2.coord_ra, o2.coord_dec)) < 0.001
WHERE o1.objectId <> o2.objectId GROUP BY o1.objectId HAVING COUNT(*) > 1 ORDER BY neighbours DESC, o1.objectId
