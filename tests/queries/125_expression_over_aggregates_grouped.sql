-- order: ordered
SELECT refBand, (MAX(coord_dec) - MIN(coord_dec)) / 2 AS half_span, SUM(r_psfFlux) / COUNT(*) AS mean_r, COUNT(*) * 2 + 1 AS odd
FROM Object GROUP BY refBand ORDER BY refBand
