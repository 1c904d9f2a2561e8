-- lang: qserv
-- order: ordered
-- MySQL sorts NULLs as the smallest value: first in ascending order
SELECT objectId, u_psfFlux FROM Object ORDER BY u_psfFlux, objectId LIMIT 40
