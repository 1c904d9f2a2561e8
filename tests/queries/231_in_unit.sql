-- order: ordered
SELECT objectId, IN_UNIT(coord_ra, 'arcsec') AS ra_arcsec, IN_UNIT(g_psfFlux, 'mJy') AS g_mjy FROM Object WHERE objectId < 1200000 ORDER BY objectId
