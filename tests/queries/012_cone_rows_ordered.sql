-- order: ordered
SELECT TOP 20 objectId, g_psfFlux FROM Object
WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(270, -25, 8)) = 1
ORDER BY g_psfFlux DESC, objectId
