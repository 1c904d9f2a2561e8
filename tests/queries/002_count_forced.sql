SELECT COUNT(*) AS n FROM ForcedSource
