-- order: ordered
SELECT DISTINCT TOP 3 refBand FROM Object ORDER BY refBand
