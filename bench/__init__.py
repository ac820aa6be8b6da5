"""Benchmarks of keda-otel-scaler: ``python -m bench`` (``make bench``) writes ``bench/RESULTS.md``."""
