WITH lc AS (SELECT objectId, COUNT(*) AS n, STDDEV(psfFlux) AS sd FROM ForcedSource GROUP BY objectId),
     variable AS (SELECT objectId, n, sd FROM lc WHERE sd > 500)
SELECT COUNT(*), AVG(n), MAX(sd) FROM variable
