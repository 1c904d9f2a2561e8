SELECT detect_isPrimary, COUNT(*) FROM Object WHERE detect_isPrimary = 1 OR 0 = detect_isPrimary GROUP BY detect_isPrimary
