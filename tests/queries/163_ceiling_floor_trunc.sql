SELECT SUM(CEILING(coord_ra)), SUM(FLOOR(coord_dec)), SUM(TRUNCATE(coord_ra, 1)) FROM Object
