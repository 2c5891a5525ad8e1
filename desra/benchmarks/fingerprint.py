"""Benchmarks for fingerprint (registered by name in desra.bench)."""
