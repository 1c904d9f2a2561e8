-- refuse: did you mean coord_ra
SELECT coord_raa FROM Object
