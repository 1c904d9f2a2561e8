SELECT LOWER(band) AS b, UPPER(band) AS u, COUNT(*) FROM ForcedSource GROUP BY LOWER(band), UPPER(band)
