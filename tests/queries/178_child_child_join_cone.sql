SELECT s.band, COUNT(*) FROM Source s JOIN ForcedSource f ON s.objectId = f.objectId AND s.band = f.band
WHERE CONTAINS(POINT(s.coord_ra, s.coord_dec), CIRCLE(266.4, -28.9, 12)) = 1 GROUP BY s.band
