-- refuse: window functions
SELECT objectId, ROW_NUMBER() OVER (ORDER BY objectId) FROM Object
