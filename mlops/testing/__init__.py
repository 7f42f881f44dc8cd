"""What the suite and the benchmarks share: tables of many shapes and the whole loop run on one of them.

Not used by the platform itself; it lives in the package so that ``benchmarks/`` never imports ``tests/``.
"""
