"""Benchmarks for detect (registered by name in desra.bench)."""
