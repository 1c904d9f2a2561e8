SELECT o.refBand, COUNT(*) FROM Object o JOIN Source s ON o.objectId = s.objectId
JOIN ForcedSource f ON f.objectId = o.objectId WHERE o.coord_dec BETWEEN -10 AND 10 GROUP BY o.refBand
