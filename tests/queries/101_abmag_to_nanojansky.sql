SELECT COUNT(*) FROM ForcedSource WHERE psfFlux > scisql_abMagToNanojansky(22)
