SELECT DISTINCT FLOOR(coord_dec / 30) AS dec_zone, refExtendedness FROM Object
