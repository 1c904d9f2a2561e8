SELECT COUNT(*) FROM Object o WHERE o.objectId NOT IN (SELECT f.objectId FROM ForcedSource f WHERE f.band = 'g')
