SELECT objectId, scisql_nanojanskyToAbMag(g_psfFlux) - scisql_nanojanskyToAbMag(r_psfFlux) AS g_r FROM Object
WHERE g_psfFlux > 0 AND r_psfFlux > 0 AND scisql_nanojanskyToAbMag(r_psfFlux) < 19
