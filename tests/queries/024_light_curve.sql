-- order: ordered
SELECT o.objectId, f.band, f.psfFlux, f.forcedSourceId FROM Object AS o
JOIN ForcedSource AS f ON o.objectId = f.objectId
WHERE o.objectId = 1000000000123 ORDER BY f.forcedSourceId
