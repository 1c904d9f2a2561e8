SELECT COUNT(*) FROM ForcedSource WHERE ccdVisitId IN (SELECT ccdVisitId FROM CcdVisit WHERE band = 'r')
