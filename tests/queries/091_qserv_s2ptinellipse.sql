-- lang: qserv
SELECT objectId FROM Object WHERE scisql_s2PtInEllipse(coord_ra, coord_dec, 270, -30, 18000, 9000, 45) = 1
