-- lang: qserv
SELECT COUNT(*) FROM Object o1, Object o2
WHERE scisql_s2PtInCircle(o1.coord_ra, o1.coord_dec, o2.coord_ra, o2.coord_dec, 0.0001) = 1 AND o1.objectId <> o2.objectId
