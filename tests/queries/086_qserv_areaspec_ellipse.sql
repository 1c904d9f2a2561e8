-- lang: qserv
SELECT COUNT(*) FROM Object WHERE qserv_areaspec_ellipse(266.4, -28.9, 14400, 7200, 30) AND refBand = 'i'
