-- order: ordered
SELECT TOP 10 objectId, DISTANCE(POINT(coord_ra, coord_dec), POINT(90, 0)) AS d FROM Object
WHERE DISTANCE(POINT(coord_ra, coord_dec), POINT(90, 0)) < 10 ORDER BY d, objectId
