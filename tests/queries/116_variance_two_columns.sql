SELECT STDDEV(g_psfFlux), VAR_POP(r_psfFlux), STDDEV_POP(coord_dec) FROM Object
