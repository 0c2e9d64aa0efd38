"""Benchmarks, experiments and device checks, run from the repository root as `python -m tools.NAME`
(the shared harness: tools/harness.py)."""
