-- refuse: names here have no part before the catalog
SELECT TOP 1 x.qt.Object.objectId FROM qt.Object
