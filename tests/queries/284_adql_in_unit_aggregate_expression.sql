-- order: ordered
SELECT refBand, IN_UNIT(AVG(g_psfFlux - r_psfFlux), 'mJy') AS gr FROM Object GROUP BY refBand ORDER BY refBand
