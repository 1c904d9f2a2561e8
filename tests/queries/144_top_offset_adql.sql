-- order: ordered
SELECT TOP 5 objectId, coord_ra FROM Object ORDER BY coord_ra OFFSET 7
