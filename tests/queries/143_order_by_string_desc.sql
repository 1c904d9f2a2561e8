-- order: ordered
SELECT TOP 15 sourceId, band FROM Source ORDER BY band DESC, sourceId
