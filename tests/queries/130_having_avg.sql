SELECT refBand, AVG(r_psfFlux) FROM Object GROUP BY refBand HAVING AVG(r_psfFlux) > 5000 AND COUNT(*) > 10
