"""Benchmarks for finetune (registered by name in desra.bench)."""
