SELECT SUM(g_psfFlux) / COUNT(g_psfFlux) AS mean_g, MAX(coord_ra) - MIN(coord_ra) AS span FROM Object
