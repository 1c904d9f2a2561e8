SELECT s.sourceId, v.seeing, v.expMidptMJD FROM Source s JOIN CcdVisit v ON s.ccdVisitId = v.ccdVisitId
WHERE CONTAINS(POINT(s.coord_ra, s.coord_dec), CIRCLE(266.4, -28.9, 3)) = 1 AND v.seeing < 0.9
