-- lang: qserv
-- MySQL: / of integers is decimal (4 more digits), DIV a BIGINT, integer * in 64 bits
SELECT refBand, SUM(tract) / COUNT(*) AS mean_tract, MAX(patch DIV 3) AS p3,
       MAX(tract * 100000 + patch) AS code, MIN(u_psfFlux % 7) AS m
FROM Object GROUP BY refBand
