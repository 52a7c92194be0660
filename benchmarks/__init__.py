"""Benchmarks (run ``python -m benchmarks.run``)."""
