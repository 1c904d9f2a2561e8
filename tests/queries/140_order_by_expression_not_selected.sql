-- order: ordered
SELECT TOP 10 objectId FROM Object WHERE g_psfFlux > 0 AND r_psfFlux > 0 ORDER BY g_psfFlux / r_psfFlux DESC, objectId
