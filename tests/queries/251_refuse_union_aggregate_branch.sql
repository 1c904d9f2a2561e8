-- refuse: must return plain rows
SELECT band FROM ForcedSource GROUP BY band UNION SELECT band FROM CcdVisit
