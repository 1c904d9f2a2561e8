SELECT COUNT(*) FROM Object WHERE objectId IN (SELECT objectId FROM Source WHERE band = 'u')
