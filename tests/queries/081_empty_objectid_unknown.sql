SELECT objectId, coord_ra FROM Object WHERE objectId = 5
