SELECT DISTINCT refBand, detect_isPrimary FROM Object
