SELECT band FROM CcdVisit EXCEPT SELECT band FROM CcdVisit WHERE seeing < 0.7
