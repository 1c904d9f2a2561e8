-- lang: postgresql
SELECT objectid, coord_ra FROM object
WHERE contains(point(coord_ra, coord_dec), circle(266.4, -28.9, 2)) = 1
