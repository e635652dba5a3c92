"""Benchmarks that print figures (`python -m bench`); tests never assert on time."""
