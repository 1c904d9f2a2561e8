SELECT o.objectId, s.sourceId FROM Object o LEFT JOIN Source s ON o.objectId = s.objectId
WHERE CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(0, 30, 15)) = 1
