SELECT COUNT(*) FROM Object o WHERE NOT EXISTS (SELECT 1 FROM Source s WHERE s.objectId = o.objectId AND s.psfFlux > 1000)
