-- order: ordered
SELECT CASE WHEN coord_dec < -30 THEN 'south' WHEN coord_dec > 30 THEN 'north' ELSE 'equator' END AS sky_zone,
COUNT(*) AS n, AVG(r_psfFlux) FROM Object GROUP BY CASE WHEN coord_dec < -30 THEN 'south' WHEN coord_dec > 30 THEN 'north' ELSE 'equator' END
ORDER BY sky_zone
