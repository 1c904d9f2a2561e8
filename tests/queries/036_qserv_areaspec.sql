-- lang: qserv
SELECT objectId, coord_ra FROM Object WHERE qserv_areaspec_box(250, -40, 285, -10)
