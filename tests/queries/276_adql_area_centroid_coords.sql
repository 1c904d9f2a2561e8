-- order: ordered
SELECT TOP 5 objectId, AREA(CIRCLE(coord_ra, coord_dec, 0.5)) AS a, COORD1(CENTROID(CIRCLE(coord_ra, coord_dec, 1))) AS c1, COORD2(POINT(coord_ra, coord_dec)) AS c2, COORDSYS(POINT(coord_ra, coord_dec)) AS s, AREA(POLYGON(9, 9, 11, 9, 10, 11)) AS p FROM Object ORDER BY objectId
