"""Benchmarks that print figures (they are never test assertions): `python -m bench.ingress`
(`make bench`) and `python -m bench.e2e` (`make bench-e2e`). See docs/benchmarks.md."""
