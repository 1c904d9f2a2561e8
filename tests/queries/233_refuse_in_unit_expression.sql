-- refuse: needs a catalog column
SELECT IN_UNIT(coord_ra + 1, 'arcsec') FROM Object
