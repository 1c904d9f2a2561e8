SELECT o.objectId, f.n, f.mean_flux FROM Object o
JOIN (SELECT objectId, COUNT(*) AS n, AVG(psfFlux) AS mean_flux FROM ForcedSource GROUP BY objectId) AS f
  ON f.objectId = o.objectId
WHERE CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(45, 0, 6)) = 1
