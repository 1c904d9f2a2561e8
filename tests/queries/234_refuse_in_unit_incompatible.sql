-- refuse: cannot convert
SELECT IN_UNIT(coord_dec, 'nJy') FROM Object
