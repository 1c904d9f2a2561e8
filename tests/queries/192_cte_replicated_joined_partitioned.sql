WITH good AS (SELECT ccdVisitId FROM CcdVisit WHERE seeing < 0.8)
SELECT COUNT(*), AVG(f.psfFlux) FROM ForcedSource f JOIN good g ON g.ccdVisitId = f.ccdVisitId
