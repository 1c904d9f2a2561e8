SELECT o.objectId, f.forcedSourceId FROM (Object AS o JOIN ForcedSource AS f ON o.objectId = f.objectId) WHERE o.objectId < 1200000
