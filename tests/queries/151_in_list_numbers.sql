SELECT objectId, tract FROM Object WHERE tract IN (1, 2, 3, 100, 1000, 5000)
