-- compare: count
SELECT objectId FROM Object WHERE coord_dec > 0 LIMIT 7
