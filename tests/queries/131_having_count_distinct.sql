SELECT objectId FROM ForcedSource GROUP BY objectId HAVING COUNT(DISTINCT band) >= 4
