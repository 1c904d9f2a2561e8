SELECT t.band, t.s, COUNT(*) FROM (SELECT band, AVG(seeing) AS s FROM CcdVisit GROUP BY band) AS t
JOIN ForcedSource f ON f.band = t.band GROUP BY t.band, t.s
