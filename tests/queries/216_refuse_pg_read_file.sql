-- refuse: is not allowed
-- lang: postgresql
SELECT pg_read_file('/etc/passwd')
