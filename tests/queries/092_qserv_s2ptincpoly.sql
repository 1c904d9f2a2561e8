-- lang: qserv
SELECT objectId FROM Object WHERE scisql_s2PtInCPoly(coord_ra, coord_dec, 355, 50, 10, 50, 10, 65, 355, 65) = 1
