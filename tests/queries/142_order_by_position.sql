-- order: ordered
SELECT objectId, coord_dec FROM Object WHERE coord_dec > 60 ORDER BY 2 DESC, 1
