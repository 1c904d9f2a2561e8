SELECT STDDEV(coord_ra), STDDEV(coord_dec), VAR_SAMP(r_psfFlux) FROM Object
