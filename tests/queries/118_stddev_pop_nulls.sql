SELECT STDDEV_POP(u_psfFlux), VAR_SAMP(u_psfFlux), COUNT(u_psfFlux) FROM Object
