SELECT COUNT(*) AS n, SUM(psfFlux) AS s, MAX(band) FROM ForcedSource WHERE psfFlux > 1e30
