-- refuse: INTO
-- lang: postgresql
SELECT objectId INTO mine FROM Object
