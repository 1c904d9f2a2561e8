-- refuse: outer join
SELECT COUNT(*) FROM ForcedSource f FULL JOIN CcdVisit v ON f.ccdVisitId = v.ccdVisitId
