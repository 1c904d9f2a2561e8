-- refuse: names here have no part before the catalog
SELECT TOP 1 objectId FROM x.qt.Object
