-- refuse: must stay within a chunk
SELECT COUNT(*) FROM Object o WHERE o.r_psfFlux > (SELECT AVG(r_psfFlux) FROM Object)
