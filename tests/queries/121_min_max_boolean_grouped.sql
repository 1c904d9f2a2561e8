SELECT detect_isPrimary, COUNT(*), MIN(coord_ra) FROM Object GROUP BY detect_isPrimary
