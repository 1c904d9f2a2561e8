SELECT o.objectId FROM Object o WHERE o.coord_dec BETWEEN -10 AND 10
EXCEPT
SELECT f.objectId FROM ForcedSource f WHERE f.psfFlux > 3000
