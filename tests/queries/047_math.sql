SELECT COUNT(*), SUM(ROUND(coord_ra, 1)), MAX(MOD(tract, 7)), MIN(LOG10(ABS(g_psfFlux) + 1)) FROM Object
