SELECT COUNT(*) FROM Source WHERE band ILIKE 'G' OR band LIKE 'z%'
