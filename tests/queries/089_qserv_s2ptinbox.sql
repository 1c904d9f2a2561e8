-- lang: qserv
SELECT COUNT(*) FROM Object WHERE scisql_s2PtInBox(coord_ra, coord_dec, 250, -45, 290, -15) = 1
