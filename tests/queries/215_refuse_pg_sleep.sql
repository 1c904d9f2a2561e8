-- refuse: pg_sleep is not allowed
-- lang: postgresql
SELECT pg_sleep(10)
