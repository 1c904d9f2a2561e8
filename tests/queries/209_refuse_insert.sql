-- refuse: INSERT
-- lang: postgresql
INSERT INTO Object (objectId) VALUES (1)
