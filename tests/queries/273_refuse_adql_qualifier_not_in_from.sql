-- refuse: x is not a table or alias of the FROM clause
SELECT x.objectId FROM Object
