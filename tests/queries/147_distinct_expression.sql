SELECT DISTINCT FLOOR(coord_dec / 30) AS zone, refExtendedness FROM Object
