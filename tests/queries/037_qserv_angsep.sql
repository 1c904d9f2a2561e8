-- lang: qserv
SELECT COUNT(*) FROM Object WHERE scisql_angSep(coord_ra, coord_dec, 266.4, -28.9) < 3
