-- order: ordered
SELECT TOP 5 objectId, POINT('ICRS', coord_ra, coord_dec) AS p, CIRCLE(coord_ra, coord_dec, 0.01) AS c,
  POLYGON(coord_ra, coord_dec, coord_ra + 1, coord_dec, coord_ra, coord_dec + 1) AS poly, CENTROID(CIRCLE(10, 20, 1)) AS centre
FROM Object WHERE coord_dec > 0 ORDER BY objectId
