-- refuse: mixes a SELECT of replicated tables only
SELECT ccdVisitId FROM ForcedSource WHERE psfFlux > 5000 UNION SELECT ccdVisitId FROM CcdVisit
