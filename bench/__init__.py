"""Benchmarks (not tests): `python -m bench.optimizer_step`."""
