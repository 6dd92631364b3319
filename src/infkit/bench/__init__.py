"""Benchmarks: a threaded HTTP load generator (closed/open loop, sweeps) and an in-process model benchmark.

Load generation, measurement and reporting are separate pieces joined by plain records."""
