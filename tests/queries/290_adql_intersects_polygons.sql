-- INTERSECTS of two polygons: of columns with a constant BOX and POLYGON, either way round
SELECT objectId FROM Object
WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(260, -25, 12)) = 1 AND (INTERSECTS(POLYGON(coord_ra - 1, coord_dec - 1, coord_ra + 1, coord_dec - 1, coord_ra, coord_dec + 1), BOX(265, -30, 6, 6)) = 1
   OR INTERSECTS(POLYGON(250, -25, 258, -25, 254, -18), BOX(coord_ra, coord_dec, 2, 2)) = 1)
