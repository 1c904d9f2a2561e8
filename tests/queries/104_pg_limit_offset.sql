-- lang: postgresql
-- order: ordered
SELECT objectid, coord_dec FROM object ORDER BY coord_dec DESC, objectid LIMIT 5 OFFSET 5
