SELECT COUNT(*) FROM Source s JOIN ForcedSource f ON s.objectId = f.objectId WHERE s.band = f.band
