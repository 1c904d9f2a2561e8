-- lang: qserv
SELECT refBand, SUM(IFNULL(u_psfFlux, 0)) AS u, MAX(tract DIV 100), MIN(patch MOD 7) FROM Object GROUP BY refBand
