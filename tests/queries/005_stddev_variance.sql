-- order: ordered
SELECT band, STDDEV(psfFlux) AS s, VARIANCE(psfFlux) AS v, STDDEV_POP(psfFlux), VAR_POP(psfFlux)
FROM ForcedSource GROUP BY band ORDER BY band
