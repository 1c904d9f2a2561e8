-- refuse: subqueries over partitioned tables
SELECT COUNT(*) FROM CcdVisit v WHERE EXISTS (SELECT 1 FROM ForcedSource f WHERE f.ccdVisitId = v.ccdVisitId)
