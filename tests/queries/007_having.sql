-- order: ordered
SELECT objectId, COUNT(*) AS n FROM ForcedSource GROUP BY objectId HAVING COUNT(*) > 6 ORDER BY n DESC, objectId
