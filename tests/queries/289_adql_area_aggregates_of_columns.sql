-- AREA of regions of columns inside aggregates, grouped: per-chunk sums merged
SELECT CASE WHEN coord_dec > 0 THEN 'N' ELSE 'S' END AS hemisphere, COUNT(*) AS n,
  SUM(AREA(BOX(coord_ra, coord_dec, 0.5, 0.5))) AS boxes,
  MAX(AREA(POLYGON(coord_ra, coord_dec, coord_ra + 0.5, coord_dec, coord_ra, coord_dec + 0.5))) AS biggest
FROM Object WHERE CONTAINS(POINT(coord_ra, coord_dec), CIRCLE(60, 0, 12)) = 1 GROUP BY CASE WHEN coord_dec > 0 THEN 'N' ELSE 'S' END
