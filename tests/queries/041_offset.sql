-- order: ordered
SELECT objectId FROM Object ORDER BY objectId OFFSET 10 LIMIT 5
