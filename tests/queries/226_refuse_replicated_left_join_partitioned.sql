-- refuse: outer join
SELECT COUNT(*) FROM CcdVisit v LEFT JOIN ForcedSource f ON f.ccdVisitId = v.ccdVisitId
