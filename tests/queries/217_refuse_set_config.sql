-- refuse: is not allowed
-- lang: postgresql
SELECT set_config('statement_timeout', '0', false) FROM Object
