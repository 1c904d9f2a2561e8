SELECT ccdVisitId FROM CcdVisit WHERE seeing < 0.8 INTERSECT SELECT ccdVisitId FROM CcdVisit WHERE band = 'r'
