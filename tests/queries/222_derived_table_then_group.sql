SELECT t.refBand, COUNT(*) FROM (SELECT refBand FROM Object WHERE coord_dec > 0) AS t GROUP BY t.refBand
