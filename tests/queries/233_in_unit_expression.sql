-- order: ordered
SELECT TOP 10 objectId, IN_UNIT(coord_ra + 1, 'arcsec') AS ra1, IN_UNIT(-coord_dec, 'rad') AS dec_rad FROM Object ORDER BY objectId
