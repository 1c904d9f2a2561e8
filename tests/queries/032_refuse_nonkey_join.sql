-- refuse: not joined chunk by chunk
SELECT COUNT(*) FROM Object o JOIN ForcedSource f ON o.tract = f.ccdVisitId
