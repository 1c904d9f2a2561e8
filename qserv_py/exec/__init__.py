"""Execution: dispatch to workers, merge, query tracking."""
