-- order: ordered
-- AREA of a POLYGON, a BOX and a CIRCLE built from columns; CENTROID of a POLYGON of columns
SELECT TOP 20 objectId,
  AREA(POLYGON(coord_ra, coord_dec, coord_ra + 1, coord_dec, coord_ra, coord_dec + 1)) AS tri,
  AREA(BOX(coord_ra, coord_dec, 1, 2)) AS box_area,
  AREA(CIRCLE(coord_ra, coord_dec, ABS(coord_dec) / 100)) AS disc,
  COORD1(CENTROID(POLYGON(coord_ra, coord_dec, coord_ra + 1, coord_dec, coord_ra, coord_dec + 1))) AS c1,
  COORD2(CENTROID(POLYGON(coord_ra, coord_dec, coord_ra + 1, coord_dec, coord_ra, coord_dec + 1))) AS c2,
  CENTROID(POLYGON(coord_ra - 1, coord_dec - 1, coord_ra + 1, coord_dec - 1, coord_ra, coord_dec + 1)) AS c,
  BOX(coord_ra, coord_dec, 0.5, 0.25) AS b
FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(60, 30, 10)) = 1 ORDER BY objectId
