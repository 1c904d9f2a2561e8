SELECT MIN(band), MAX(band), MIN(forcedSourceId), MAX(ccdVisitId) FROM ForcedSource
