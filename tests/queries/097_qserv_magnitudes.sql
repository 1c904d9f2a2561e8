-- lang: qserv
SELECT objectId, scisql_nanojanskyToAbMag(r_psfFlux) AS r, scisql_nanojanskyToAbMagSigma(r_psfFlux, r_psfFluxErr) AS r_err,
scisql_fluxToAbMag(r_psfFlux * 1e-9) AS r2
FROM Object WHERE qserv_areaspec_circle(266.4, -28.9, 3) AND r_psfFlux > 0
