-- refuse: did you mean Object
SELECT COUNT(*) FROM Objct
