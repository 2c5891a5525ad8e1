"""Benchmarks for sr (registered by name in desra.bench)."""
