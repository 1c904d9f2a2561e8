-- lang: postgresql
SELECT upper(band) AS b, length(band) AS l, count(*) FROM source GROUP BY upper(band), length(band)
