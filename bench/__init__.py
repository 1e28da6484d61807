"""Benchmarks: run by hand from the repository root, never part of the test suite."""
