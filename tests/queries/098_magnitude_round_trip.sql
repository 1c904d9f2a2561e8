SELECT COUNT(*) FROM Object
WHERE g_psfFlux > 0 AND ABS(scisql_abMagToNanojansky(scisql_nanojanskyToAbMag(g_psfFlux)) - g_psfFlux) > 1e-6 * g_psfFlux
