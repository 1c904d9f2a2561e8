-- lang: postgresql
SELECT COUNT(*) FROM Object WHERE NOT detect_isPrimary
