-- order: ordered
SELECT TOP 5 objectId, scisql_nanojanskyToAbMag(g_psfFlux) AS g FROM Object
WHERE g_psfFlux > 0 ORDER BY g, objectId
