-- lang: qserv
SELECT objectId, coord_ra, coord_dec FROM Object WHERE qserv_areaspec_circle(266.4, -28.9, 2.5)
