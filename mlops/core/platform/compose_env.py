"""``.env`` for ``docker compose``: written from ``.env.example`` with every empty secret generated.

``python -m mlops.core.platform.compose_env`` (``make compose-env``; standard library only, so it runs before any
setup) creates ``.env`` where it is absent, readable by its owner only, and fills in each empty value of a
secret (names ending in PASSWORD or TOKEN) that an existing ``.env`` lacks. It never prints a secret and never
replaces one that is set: changing a secret is an operator's decision (docs/operations.md).
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / ".env.example"
SECRET = re.compile(r"(PASSWORD|TOKEN)$")


def read(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of an env file (comments and blank lines skipped)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def _key(line: str) -> str | None:
    key, sep, _ = line.partition("=")
    return key.strip() if sep and not line.lstrip().startswith("#") else None


def ensure(path: Path | None = None, example: Path = EXAMPLE) -> Path:
    """Create or complete ``path`` (default ``.env`` beside the compose file); returns it."""
    path = path or example.with_name(".env")
    lines = (path if path.is_file() else example).read_text().splitlines()
    present = {_key(line) for line in lines}
    # settings the example has and the file lacks (a new release may add some) are appended as in the example
    lines += [line for line in example.read_text().splitlines() if _key(line) and _key(line) not in present]
    generated = []
    for number, line in enumerate(lines):
        key = _key(line)
        if key and SECRET.search(key) and not line.partition("=")[2].strip():
            lines[number] = f"{key}={secrets.token_hex(24)}"  # hex: safe inside the database URLs compose builds
            generated.append(key)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    if generated:
        print(f"{path}: generated {', '.join(generated)} (never printed; readable by its owner only)")
    return path


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else None
    ensure(target)
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    raise SystemExit(main(sys.argv[1:]))
