-- order: ordered
SELECT FLOOR(coord_dec / 10) AS dec_band, COUNT(*) AS n FROM Object GROUP BY FLOOR(coord_dec / 10) ORDER BY dec_band
