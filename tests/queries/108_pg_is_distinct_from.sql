-- lang: postgresql
SELECT count(*) FROM object WHERE u_psfflux IS DISTINCT FROM g_psfflux
