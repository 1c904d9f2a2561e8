-- CONTAINS of discs of columns in a constant circle and a constant box, 1 on either side:
-- the chunks read are those of both
SELECT COUNT(*) AS n, MIN(objectId) AS lowest FROM Object
WHERE 1 = CONTAINS(CIRCLE(coord_ra, coord_dec, 0.5), CIRCLE(265, -30, 4))
  AND CONTAINS(CIRCLE(coord_ra, coord_dec, 0), BOX(263, -30, 6, 4)) = 1
