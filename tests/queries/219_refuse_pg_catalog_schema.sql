-- refuse: no catalog pg_catalog
-- lang: postgresql
SELECT relname FROM pg_catalog.pg_class
