SELECT SUM(objectId), SUM(ccdVisitId) FROM ForcedSource
