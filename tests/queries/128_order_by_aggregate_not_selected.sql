-- order: ordered
SELECT refBand FROM Object GROUP BY refBand ORDER BY COUNT(*) DESC, refBand
