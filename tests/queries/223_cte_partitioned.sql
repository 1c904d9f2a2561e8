WITH bright AS (SELECT objectId FROM Object WHERE r_psfFlux > 1e5) SELECT COUNT(*) FROM bright
