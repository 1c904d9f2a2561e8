-- refuse: LIMIT/OFFSET, which would apply per chunk
SELECT COUNT(*) FROM (SELECT TOP 5 objectId FROM Object) AS b
