-- refuse: not joined chunk by chunk
SELECT COUNT(*) FROM Source s JOIN ForcedSource f ON s.ccdVisitId = f.ccdVisitId
