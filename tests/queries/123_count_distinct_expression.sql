SELECT COUNT(DISTINCT FLOOR(coord_dec)) AS bands_of_dec, COUNT(DISTINCT refBand) FROM Object
