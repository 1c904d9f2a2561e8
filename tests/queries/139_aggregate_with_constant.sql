SELECT 'all' AS what, COUNT(*), 1 + 1 AS two FROM Source
