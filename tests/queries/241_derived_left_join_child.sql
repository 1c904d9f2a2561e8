SELECT o.objectId, s.n FROM Object o LEFT JOIN (SELECT objectId, COUNT(*) AS n FROM Source WHERE psfFlux > 500 GROUP BY objectId) AS s ON s.objectId = o.objectId
WHERE o.coord_dec BETWEEN -3 AND 3 AND o.coord_ra BETWEEN 40 AND 50
