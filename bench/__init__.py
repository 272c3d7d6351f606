"""Benchmarks (``make bench``). Each figure is measured beside a raw redis-py or asyncpg
loop doing the same round trips in the same run, and reported as a ratio."""
