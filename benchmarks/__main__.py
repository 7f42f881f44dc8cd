"""Run benchmarks: ``python -m benchmarks`` (all) or ``python -m benchmarks NAME [NAME ...]``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    """The modules with a ``main()``: the others (the load generator, the table generator) support them."""
    folder = Path(__file__).resolve().parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if not m.name.startswith("_"))
    return [name for name in names if hasattr(importlib.import_module(f"benchmarks.{name}"), "main")]


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        print(f"== benchmark {name}", flush=True)
        module.main()
    return 0


raise SystemExit(main(sys.argv[1:]))
