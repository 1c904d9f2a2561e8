SELECT objectId, COALESCE(u_psfFlux, -1) AS u, NULLIF(refBand, 'i') AS b FROM Object WHERE u_psfFlux IS NULL OR refExtendedness IS NULL
