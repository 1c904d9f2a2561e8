-- refuse: must stay within a chunk
SELECT COUNT(*) FROM CcdVisit v WHERE EXISTS (SELECT 1 FROM ForcedSource f WHERE f.ccdVisitId = v.ccdVisitId)
