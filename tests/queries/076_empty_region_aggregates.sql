SELECT COUNT(*), COUNT(g_psfFlux), SUM(g_psfFlux), AVG(g_psfFlux), MIN(coord_ra), MAX(coord_dec), STDDEV(g_psfFlux)
FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(101.2872, -16.7161, 2)) = 1
