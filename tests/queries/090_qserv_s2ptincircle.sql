-- lang: qserv
SELECT objectId FROM Object WHERE scisql_s2PtInCircle(coord_ra, coord_dec, 0.5, 60, 5) = 1
