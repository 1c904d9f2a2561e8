SELECT objectId, SQRT(ABS(coord_dec)), POWER(coord_ra / 100, 2), SIN(RADIANS(coord_dec)), DEGREES(ATAN2(coord_dec, coord_ra)), EXP(-1 * ABS(coord_dec) / 90)
FROM Object WHERE coord_dec > 70
