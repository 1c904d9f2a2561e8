"""Benchmarks (run by hand; numbers go to docs/benchmarks.md)."""
