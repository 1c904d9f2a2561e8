SELECT o.refBand, COUNT(*) FROM Object o JOIN Source s ON o.objectId = s.objectId
WHERE CONTAINS(POINT(s.coord_ra, s.coord_dec), CIRCLE(100, 30, 15)) = 1 GROUP BY o.refBand
