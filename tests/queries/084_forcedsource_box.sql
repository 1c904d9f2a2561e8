SELECT COUNT(*), COUNT(DISTINCT objectId) FROM ForcedSource
WHERE CONTAINS(POINT(coord_ra, coord_dec), BOX(90, 20, 30, 30)) = 1
