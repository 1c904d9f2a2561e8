SELECT band, AVG(IN_UNIT(psfFlux, 'uJy')) AS mean_ujy, MAX(IN_UNIT(psfFlux, 'Jy')) AS max_jy FROM ForcedSource GROUP BY band
