SELECT objectId, coord_ra FROM Object o WHERE o.objectId IN (SELECT f.objectId FROM ForcedSource f WHERE f.psfFlux > 20000 AND f.band = 'r')
