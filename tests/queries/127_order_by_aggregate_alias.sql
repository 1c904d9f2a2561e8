-- order: ordered
SELECT tract, COUNT(*) AS n FROM Object GROUP BY tract ORDER BY n DESC, tract LIMIT 10
