-- refuse: aggregates rows of several chunks
SELECT COUNT(*) FROM (SELECT band, COUNT(*) AS n FROM ForcedSource GROUP BY band) AS b
