-- refuse: DELETE
-- lang: postgresql
DELETE FROM Object WHERE objectId = 1000000000001
