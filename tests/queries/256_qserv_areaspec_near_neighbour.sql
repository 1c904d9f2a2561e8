-- lang: qserv
-- the areaspec restricts both o1 and o2, as in Qserv
SELECT o1.objectId, o2.objectId FROM Object o1, Object o2
WHERE qserv_areaspec_box(0, -30, 60, 0) = 1
  AND scisql_angSep(o1.coord_ra, o1.coord_dec, o2.coord_ra, o2.coord_dec) < 0.016
  AND o1.objectId <> o2.objectId
