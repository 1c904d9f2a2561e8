-- refuse: no table pg_class
-- lang: postgresql
SELECT relname FROM pg_class
