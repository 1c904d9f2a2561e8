-- refuse: does not follow from its columns' units
SELECT IN_UNIT(g_psfFlux * 2, 'mJy') FROM Object
