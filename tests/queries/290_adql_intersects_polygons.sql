-- INTERSECTS of two polygons: of columns with a constant BOX and POLYGON, either way round
SELECT objectId FROM Object
WHERE INTERSECTS(POLYGON(coord_ra - 1, coord_dec - 1, coord_ra + 1, coord_dec - 1, coord_ra, coord_dec + 1), BOX(265, -30, 6, 6)) = 1
   OR INTERSECTS(POLYGON(240, -10, 255, -10, 245, 5), BOX(coord_ra, coord_dec, 2, 2)) = 1
