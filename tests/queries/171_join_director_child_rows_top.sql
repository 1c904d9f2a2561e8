-- order: ordered
SELECT TOP 25 o.objectId, s.sourceId, s.psfFlux FROM Object AS o INNER JOIN Source AS s ON s.objectId = o.objectId
WHERE o.coord_dec > 50 ORDER BY s.psfFlux DESC, s.sourceId
