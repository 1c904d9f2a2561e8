-- lang: postgresql
SELECT o1.objectid AS a, o2.objectid AS b FROM object o1 JOIN object o2
ON distance(point(o1.coord_ra, o1.coord_dec), point(o2.coord_ra, o2.coord_dec)) < 0.001
WHERE o1.objectid <> o2.objectid
