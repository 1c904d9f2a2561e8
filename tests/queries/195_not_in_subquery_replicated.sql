SELECT COUNT(*) FROM ForcedSource WHERE ccdVisitId NOT IN (SELECT ccdVisitId FROM CcdVisit WHERE expTime > 0 AND seeing > 1)
