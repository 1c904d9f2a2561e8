-- lang: qserv
-- order: ordered
SELECT `objectId`, `refBand` FROM Object WHERE `coord_dec` > 80 ORDER BY `objectId` LIMIT 5
