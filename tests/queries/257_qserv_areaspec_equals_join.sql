-- lang: qserv
SELECT o.objectId, s.sourceId FROM Object o JOIN Source s ON o.objectId = s.objectId
WHERE 1 = qserv_areaspec_circle(30, -20, 8) AND s.psfFlux > 0
