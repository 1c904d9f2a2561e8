SELECT COUNT(*) FROM Source s
WHERE EXISTS (SELECT 1 FROM CcdVisit v WHERE v.ccdVisitId = s.ccdVisitId AND v.band = 'g')
