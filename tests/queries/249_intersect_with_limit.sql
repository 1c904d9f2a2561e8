-- order: ordered
SELECT objectId FROM Object WHERE r_psfFlux > 500
INTERSECT
SELECT s.objectId FROM Source s JOIN Object o ON o.objectId = s.objectId WHERE s.psfFlux > 500
ORDER BY objectId LIMIT 40
