-- order: ordered
SELECT TOP 25 o.objectId, (SELECT COUNT(*) FROM ForcedSource f WHERE f.objectId = o.objectId) AS n,
  (SELECT MAX(f.psfFlux) FROM ForcedSource f WHERE f.objectId = o.objectId) AS brightest
FROM Object o ORDER BY o.objectId
