-- lang: qserv
SELECT objectId, coord_ra FROM Object WHERE qserv_areaspec_box(350, -10, 10, 15)
