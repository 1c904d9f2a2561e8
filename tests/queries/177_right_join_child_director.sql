SELECT COUNT(*) FROM ForcedSource f RIGHT JOIN Object o ON f.objectId = o.objectId AND f.psfFlux > 100000
