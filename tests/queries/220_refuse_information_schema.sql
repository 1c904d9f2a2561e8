-- refuse: no catalog information_schema
-- lang: postgresql
SELECT table_name FROM information_schema.tables
