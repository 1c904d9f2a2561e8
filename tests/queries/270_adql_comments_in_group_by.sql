-- order: ordered
SELECT refBand -- the reference band
  , COUNT(*) AS n /* objects per band */
FROM Object
GROUP BY refBand /* the same key */
ORDER BY refBand
