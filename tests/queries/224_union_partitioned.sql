SELECT objectId FROM Object WHERE coord_dec > 80 UNION SELECT objectId FROM Object WHERE coord_dec < -80
