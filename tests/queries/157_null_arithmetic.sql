SELECT SUM(u_psfFlux + g_psfFlux), COUNT(u_psfFlux * 2), MAX(u_psfFlux - g_psfFlux) FROM Object
