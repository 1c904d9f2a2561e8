-- lang: qserv
SELECT o1.objectId, o2.objectId, scisql_angSep(o1.coord_ra, o1.coord_dec, o2.coord_ra, o2.coord_dec) AS sep
FROM Object o1, Object o2
WHERE scisql_angSep(o1.coord_ra, o1.coord_dec, o2.coord_ra, o2.coord_dec) < 0.0005 AND o1.objectId != o2.objectId
