-- order: ordered
SELECT band, objectId, COUNT(*) AS n FROM ForcedSource GROUP BY band, objectId ORDER BY n DESC, objectId, band OFFSET 3
