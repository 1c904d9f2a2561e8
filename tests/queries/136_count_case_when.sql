SELECT SUM(CASE WHEN refExtendedness = 1 THEN 1 ELSE 0 END) AS galaxies,
COUNT(CASE WHEN refExtendedness = 0 THEN 1 END) AS stars, COUNT(*) FROM Object
