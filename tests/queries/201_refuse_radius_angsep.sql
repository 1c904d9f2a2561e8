-- refuse: larger than the overlap
-- lang: qserv
SELECT COUNT(*) FROM Object o1, Object o2 WHERE scisql_angSep(o1.coord_ra, o1.coord_dec, o2.coord_ra, o2.coord_dec) < 1
