-- lang: postgresql
SELECT refband || ':' || tract::text AS label, coord_ra::int AS ra_deg FROM object
WHERE refband ILIKE 'R' AND coord_dec BETWEEN 10 AND 20
