SELECT COUNT(*), MIN(coord_ra), MAX(coord_dec), AVG(g_psfFlux), SUM(tract) FROM Object
