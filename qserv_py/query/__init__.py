"""The query path: dialects, checks, analysis, rewrite passes, planner."""
