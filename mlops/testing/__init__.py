"""What the suite and the benchmarks share: tables of many shapes, the whole loop run on one of them, the
reliability drills and small predictor payloads written in deploy's layout.

Not used by the platform itself; it lives in the package so that ``benchmarks/`` never imports ``tests/``.
"""
