SELECT s.sourceId, f.forcedSourceId FROM Source s JOIN ForcedSource f ON s.objectId = f.objectId
WHERE s.objectId = 1000000002222
