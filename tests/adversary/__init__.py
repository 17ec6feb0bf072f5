"""Adversaries for the tests and tools/fuzz.py: hostile peers and hostile bytes."""
