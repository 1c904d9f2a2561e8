SELECT COUNT(*) FROM Source WHERE detect_isPrimary = TRUE
