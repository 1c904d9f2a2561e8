SELECT CASE WHEN r_psfFlux > 10000 THEN 'bright' ELSE 'faint' END AS kind, COUNT(*) FROM Object
WHERE coord_dec BETWEEN -20 AND 20 GROUP BY CASE WHEN r_psfFlux > 10000 THEN 'bright' ELSE 'faint' END
