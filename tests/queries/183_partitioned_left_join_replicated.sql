SELECT COUNT(*), COUNT(v.ccdVisitId) FROM ForcedSource f LEFT JOIN CcdVisit v ON v.ccdVisitId = f.ccdVisitId AND v.band = 'g'
