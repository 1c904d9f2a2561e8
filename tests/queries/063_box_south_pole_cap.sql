-- lang: qserv
SELECT COUNT(*), MIN(coord_dec) FROM Object WHERE scisql_s2PtInBox(coord_ra, coord_dec, 0, -90, 360, -82) = 1
