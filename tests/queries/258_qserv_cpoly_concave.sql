-- lang: qserv
-- not convex: sciSQL's answer (its edges' half-spheres), every chunk read
SELECT objectId, coord_ra FROM Object
WHERE scisql_s2PtInCPoly(coord_ra, coord_dec, 10, -45, 50, -45, 50, -5, 30, -25, 10, -5) = 1
