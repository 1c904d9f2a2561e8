-- compare: count
SELECT f.forcedSourceId FROM Object o JOIN ForcedSource f ON o.objectId = f.objectId WHERE o.coord_dec < 0 LIMIT 11
