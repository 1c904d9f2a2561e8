-- INTERSECTS of a CIRCLE of columns with a constant POLYGON (once refused), and with a BOX
SELECT COUNT(*) AS n,
  SUM(INTERSECTS(CIRCLE(coord_ra, coord_dec, 2), BOX(265, -30, 8, 6))) AS in_box
FROM Object WHERE INTERSECTS(CIRCLE(coord_ra, coord_dec, 3), POLYGON(260, -35, 270, -35, 265, -25)) = 1
  AND CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(265, -30, 10)) = 1
