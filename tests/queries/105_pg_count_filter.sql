-- lang: postgresql
SELECT count(*) FILTER (WHERE psfflux > 0) AS pos, count(*) AS n FROM forcedsource
