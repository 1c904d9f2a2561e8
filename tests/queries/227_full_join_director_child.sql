SELECT COUNT(*), COUNT(o.objectId), COUNT(s.sourceId) FROM Object o FULL JOIN Source s ON o.objectId = s.objectId
