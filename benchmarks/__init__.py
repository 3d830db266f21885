"""Reproducible benchmarks that print figures; results and how to run them: docs/BENCHMARKS.md."""
