"""``make screenshots``: start the app against the running services and photograph every page.

Streamlit runs on a free local port with the active configuration (so it reads the predictor, MLflow and
the monitoring database that are running now); Debian's headless Chromium saves one PNG per page into
``images/`` (``app-<page>.png``). The test form and batch pages are opened with ``?example=1`` so that they
show a scored client and a scored file rather than empty inputs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mlops.core import config, services

APP = Path(__file__).with_name("Home.py")
# file name -> URL path of the page (Streamlit names a page's URL after its file, minus the number prefix)
PAGES = {
    "home": "",
    "test-form": "Test_form?example=1",
    "batch-scoring": "Batch_scoring?example=1",
    "models": "Models",
    "monitoring": "Monitoring",
    "campaign-planner": "Campaign_planner",
}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise SystemExit("chromium is not installed: apt-get update && apt-get install -y chromium")
    return found


def app_process(port: int, log_path: Path) -> services.ManagedProcess:
    command = [
        str(services.VENV_BIN / "streamlit"),
        "run",
        str(APP),
        "--server.headless=true",
        "--server.address=127.0.0.1",
        f"--server.port={port}",
        "--browser.gatherUsageStats=false",
    ]
    return services.ManagedProcess("streamlit", command, log_path)


def screenshot(browser: str, url: str, out: Path, width: int, height: int, wait_ms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:  # a fresh profile every time
        command = [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={wait_ms}",
            url,
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("images"), help="folder of the PNGs (default: images)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--wait-ms", type=int, default=15000, help="Chromium's virtual time budget per page")
    parser.add_argument("pages", nargs="*", help=f"only these pages (default: all of {', '.join(PAGES)})")
    args = parser.parse_args(argv)
    unknown = set(args.pages) - set(PAGES)
    if unknown:
        parser.error(f"unknown pages {sorted(unknown)}; choose from {list(PAGES)}")
    settings = config.load()
    browser = chromium()
    out = settings.resolve(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = services.free_port()
    proc = app_process(port, settings.work_dir / "logs" / "streamlit-screenshots.log").start()
    try:
        base = f"http://127.0.0.1:{port}"
        services.wait_http(f"{base}/_stcore/health", proc, timeout=60)
        for name in args.pages or PAGES:
            path = out / f"app-{name}.png"
            screenshot(browser, f"{base}/{PAGES[name]}", path, args.width, args.height, args.wait_ms)
            print(f"{path} ({path.stat().st_size // 1024} KiB)")
    finally:
        proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
