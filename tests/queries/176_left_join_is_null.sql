SELECT o.objectId FROM Object o LEFT JOIN ForcedSource f ON o.objectId = f.objectId AND f.band = 'y'
WHERE f.forcedSourceId IS NULL AND o.coord_dec > 40
