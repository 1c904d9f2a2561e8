SELECT STDDEV(g_psfFlux), VAR_POP(g_psfFlux), STDDEV_POP(g_psfFlux), VAR_SAMP(g_psfFlux) FROM Object
