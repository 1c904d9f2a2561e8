-- order: ordered
SELECT TOP 10 o.objectId, DISTANCE(POINT(o.coord_ra, o.coord_dec), POINT(270, -25)) AS d, COUNT(*) AS n
FROM Object AS o JOIN ForcedSource AS f ON o.objectId = f.objectId
WHERE CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(270, -25, 8)) = 1
GROUP BY o.objectId, DISTANCE(POINT(o.coord_ra, o.coord_dec), POINT(270, -25))
ORDER BY DISTANCE(POINT(o.coord_ra, o.coord_dec), POINT(270, -25)), o.objectId
