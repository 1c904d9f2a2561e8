-- order: ordered
SELECT FLOOR(coord_ra / 30) AS ra_bin, COUNT(*) AS n FROM Object GROUP BY ra_bin ORDER BY ra_bin
