-- refuse: did you mean psfFlux
SELECT COUNT(*) FROM ForcedSource WHERE psfFlx > 0
