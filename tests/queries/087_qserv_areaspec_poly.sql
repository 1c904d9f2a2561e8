-- lang: qserv
SELECT objectId FROM Object WHERE qserv_areaspec_poly(255, -40, 280, -40, 280, -20, 255, -20)
