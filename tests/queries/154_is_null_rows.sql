SELECT objectId, g_psfFlux FROM Object WHERE u_psfFlux IS NULL
