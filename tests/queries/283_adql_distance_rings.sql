-- order: ordered
SELECT FLOOR(q.d) AS ring, COUNT(*) AS n FROM (SELECT objectId, DISTANCE(POINT(coord_ra, coord_dec), POINT(270, -25)) AS d FROM Object) AS q WHERE q.d < 20 GROUP BY FLOOR(q.d) ORDER BY ring
