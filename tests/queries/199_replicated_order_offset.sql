-- order: ordered
SELECT ccdVisitId, seeing FROM CcdVisit ORDER BY seeing DESC, ccdVisitId OFFSET 100 LIMIT 5
