SELECT objectId FROM Object WHERE coord_dec > 91
