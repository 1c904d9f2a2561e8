-- CONTAINS with a region of columns first: circle in circle, polygon in circle, circle in
-- polygon, box in polygon (0/1 values, and as conditions)
SELECT objectId,
  CONTAINS(CIRCLE(coord_ra, coord_dec, 0.5), CIRCLE(265, -30, 4)) AS cc,
  CONTAINS(POLYGON(coord_ra, coord_dec, coord_ra + 1, coord_dec, coord_ra, coord_dec + 1), CIRCLE(265, -30, 4)) AS pc,
  CONTAINS(CIRCLE(coord_ra, coord_dec, 0.5), POLYGON(260, -35, 270, -35, 265, -25)) AS cp,
  CONTAINS(BOX(coord_ra, coord_dec, 1, 1), POLYGON(260, -35, 270, -35, 265, -25)) AS bp
FROM Object
WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(265, -30, 6)) = 1
  AND CONTAINS(POLYGON(coord_ra, coord_dec, coord_ra + 0.5, coord_dec, coord_ra, coord_dec + 0.5), BOX(265, -30, 12, 12)) = 1
