-- refuse: window functions
-- lang: postgresql
SELECT band, SUM(psfFlux) OVER (PARTITION BY band) FROM ForcedSource
