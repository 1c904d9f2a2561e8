-- lang: qserv
-- order: ordered
SELECT objectId, scisql_angSep(coord_ra, coord_dec, 0, 0) AS d FROM Object
WHERE scisql_angSep(coord_ra, coord_dec, 0, 0) < 15 ORDER BY d LIMIT 10
