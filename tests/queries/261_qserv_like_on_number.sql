-- lang: qserv
SELECT objectId, tract FROM Object WHERE objectId LIKE '%17' OR tract LIKE '1_'
