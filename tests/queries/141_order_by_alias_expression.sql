-- order: ordered
SELECT TOP 12 objectId, g_psfFlux - r_psfFlux AS color FROM Object ORDER BY color, objectId
