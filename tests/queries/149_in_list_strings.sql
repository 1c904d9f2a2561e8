SELECT COUNT(*) FROM ForcedSource WHERE band IN ('g', 'r', 'u')
