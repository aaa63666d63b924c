"""Benchmarks: our suite (`problems/`, `candidates/`), batch runners and reports."""
