SELECT COUNT(*) AS n, COUNT(u_psfFlux) AS with_u, SUM(CASE WHEN u_psfFlux IS NULL THEN 1 ELSE 0 END) AS without_u FROM Object
