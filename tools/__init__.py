"""Benchmarks and tools run from the repository (python tools/NAME.py); a package so that
tests and type checks name their modules one way (tools.faultlab...)."""
