SELECT objectId, refBand || '-' || CAST(tract AS VARCHAR) AS label FROM Object WHERE coord_dec > 75
