-- order: ordered
SELECT DISTINCT band FROM ForcedSource ORDER BY band
