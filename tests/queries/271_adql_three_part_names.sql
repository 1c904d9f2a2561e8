-- order: ordered
SELECT TOP 5 qt.Object.objectId, qt.Object.coord_ra FROM qt.Object WHERE qt.Object.coord_dec > 0 ORDER BY qt.Object.objectId
