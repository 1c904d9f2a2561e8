-- refuse: is ambiguous
SELECT band FROM Source s JOIN ForcedSource f ON s.objectId = f.objectId
