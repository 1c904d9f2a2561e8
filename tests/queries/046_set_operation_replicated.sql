SELECT band FROM CcdVisit WHERE seeing > 1.2 UNION SELECT band FROM CcdVisit WHERE seeing < 0.6
