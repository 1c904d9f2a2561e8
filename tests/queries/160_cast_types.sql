SELECT objectId, CAST(coord_ra AS INTEGER) AS ra_i, CAST(coord_dec AS REAL) AS dec_r, CAST(tract AS BIGINT) * 2 AS t2
FROM Object WHERE coord_dec < -80
