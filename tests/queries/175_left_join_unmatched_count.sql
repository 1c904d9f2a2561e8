SELECT COUNT(*) AS n, COUNT(s.sourceId) AS matched FROM Object o LEFT OUTER JOIN Source s
ON o.objectId = s.objectId AND s.band = 'u'
