-- order: ordered
SELECT refBand, VAR_SAMP(r_psfFlux), STDDEV_SAMP(r_psfFlux), VARIANCE(r_psfFlux) FROM Object GROUP BY refBand ORDER BY refBand
