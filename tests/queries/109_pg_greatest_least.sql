-- lang: postgresql
SELECT max(greatest(g_psfflux, r_psfflux, i_psfflux)), min(least(g_psfflux, r_psfflux)) FROM object
