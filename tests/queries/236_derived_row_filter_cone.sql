SELECT COUNT(*), MIN(s.ra), MAX(s.dec) FROM (SELECT objectId, coord_ra AS ra, coord_dec AS dec FROM Object WHERE r_psfFlux > 1000) AS s
WHERE CONTAINS(POINT(s.ra, s.dec), CIRCLE(0, 0, 10)) = 1
