SELECT COUNT(*) FROM Object WHERE (refBand = 'g' OR refBand = 'r') AND (coord_dec > 0 OR tract < 100)
