WITH north AS (SELECT objectId, coord_dec FROM Object WHERE coord_dec > 60)
SELECT objectId FROM north UNION SELECT objectId FROM Object WHERE coord_dec < -60
