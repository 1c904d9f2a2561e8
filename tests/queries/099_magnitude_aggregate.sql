-- order: ordered
SELECT refBand, AVG(scisql_nanojanskyToAbMag(r_psfFlux)) AS mean_r, MIN(scisql_nanojanskyToAbMag(r_psfFlux))
FROM Object WHERE r_psfFlux > 0 GROUP BY refBand ORDER BY refBand
