-- lang: qserv
SELECT o.objectId, s.sourceId, s.band FROM Object o JOIN Source s ON o.objectId = s.objectId
WHERE o.objectId IN (1000000000010, 1000000001445, 1000000002500)
