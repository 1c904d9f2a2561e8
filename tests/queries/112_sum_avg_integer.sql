SELECT SUM(patch), AVG(patch), SUM(tract), AVG(tract) FROM Object
