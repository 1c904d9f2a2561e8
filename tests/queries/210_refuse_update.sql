-- refuse: UPDATE
-- lang: postgresql
UPDATE CcdVisit SET seeing = 0
