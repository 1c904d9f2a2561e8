-- order: ordered
-- lang: postgresql
SELECT refBand, detect_isPrimary, COUNT(*) FROM Object GROUP BY 1, 2 ORDER BY 1, 2
