-- order: ordered
SELECT TOP 7 objectId FROM Object ORDER BY DISTANCE(POINT(coord_ra, coord_dec), POINT(270, -25)), objectId
