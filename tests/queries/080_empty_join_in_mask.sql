SELECT COUNT(*) FROM Object o JOIN ForcedSource f ON o.objectId = f.objectId
WHERE CONTAINS(POINT(o.coord_ra, o.coord_dec), CIRCLE(101.2872, -16.7161, 2.5)) = 1
