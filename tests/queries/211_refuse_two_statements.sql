-- refuse: only one SELECT statement
-- lang: postgresql
SELECT COUNT(*) FROM Object; SELECT COUNT(*) FROM Source
