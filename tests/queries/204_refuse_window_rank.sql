-- refuse: window functions
SELECT objectId, RANK() OVER (PARTITION BY refBand ORDER BY r_psfFlux) FROM Object
