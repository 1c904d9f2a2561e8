SELECT refBand, COUNT(*) FROM Object WHERE refBand NOT IN ('i', 'z') GROUP BY refBand
