SELECT COUNT(*) AS n FROM qt.ForcedSource
