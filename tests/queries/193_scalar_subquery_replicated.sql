SELECT COUNT(*) FROM ForcedSource f JOIN CcdVisit v ON v.ccdVisitId = f.ccdVisitId
WHERE v.seeing > (SELECT AVG(seeing) FROM CcdVisit)
