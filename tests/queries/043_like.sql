SELECT COUNT(*) FROM ForcedSource WHERE band LIKE 'r' OR band ILIKE 'I'
