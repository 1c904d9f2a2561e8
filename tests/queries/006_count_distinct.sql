SELECT COUNT(DISTINCT band) AS bands, COUNT(*) AS n, COUNT(DISTINCT objectId) AS objects FROM ForcedSource
