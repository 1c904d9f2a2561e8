SELECT COUNT(*), SUM(f.psfFlux) FROM Object o, ForcedSource f WHERE o.objectId = f.objectId AND o.refBand = 'r'
