-- refuse: must stay within a chunk
SELECT COUNT(*) FROM CcdVisit v WHERE v.ccdVisitId IN (SELECT f.ccdVisitId FROM ForcedSource f WHERE f.psfFlux > 1000)
