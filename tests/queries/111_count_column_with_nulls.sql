SELECT COUNT(*), COUNT(u_psfFlux), COUNT(refExtendedness), COUNT(psfDiffFlux) FROM Object o JOIN ForcedSource f ON o.objectId = f.objectId
