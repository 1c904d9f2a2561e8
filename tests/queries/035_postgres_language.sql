-- lang: postgresql
-- order: ordered
SELECT refband, count(*) AS n FROM object WHERE coord_dec BETWEEN -30 AND 30 GROUP BY refband ORDER BY n DESC, refband LIMIT 3
