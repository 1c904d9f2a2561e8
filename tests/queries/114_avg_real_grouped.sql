SELECT band, AVG(psfFlux), AVG(psfFluxErr) FROM ForcedSource GROUP BY band
