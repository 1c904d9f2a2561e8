SELECT band, STDDEV(psfFlux) AS sd_flux, VARIANCE(psfFluxErr) AS var_err, STDDEV_POP(psfFlux + psfFluxErr) AS sdp, COUNT(*) AS n FROM ForcedSource GROUP BY band
