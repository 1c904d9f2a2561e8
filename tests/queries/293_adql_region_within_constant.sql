-- order: ordered
-- CONTAINS of a disc of columns (a constant radius) in a constant polygon: the chunks read
-- are the polygon's
SELECT objectId, coord_ra, coord_dec FROM Object
WHERE CONTAINS(CIRCLE(coord_ra, coord_dec, 0.25), POLYGON(260, -35, 270, -35, 265, -25)) = 1
ORDER BY objectId
