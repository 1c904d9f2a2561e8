-- lang: postgresql
-- order: ordered
SELECT objectid, u_psfflux FROM object ORDER BY u_psfflux NULLS FIRST, objectid LIMIT 30
