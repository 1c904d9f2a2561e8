-- order: ordered
SELECT refBand, COUNT(*) AS n, AVG(r_psfFlux) AS mean_r, MIN(r_psfFlux), MAX(r_psfFlux)
FROM Object GROUP BY refBand ORDER BY refBand
