SELECT o.objectId, s.* FROM Object o JOIN Source s ON o.objectId = s.objectId WHERE o.objectId IN (1000000000001, 1000000000002)
