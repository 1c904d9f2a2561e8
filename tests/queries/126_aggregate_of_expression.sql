SELECT SUM(g_psfFlux - r_psfFlux), AVG(ABS(g_psfFlux - r_psfFlux)), MAX(g_psfFlux / NULLIF(r_psfFlux, 0)) FROM Object
