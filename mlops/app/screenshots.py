"""``make screenshots``: start the app against the running services and photograph every page.

Streamlit runs on a free local port with the active configuration (so it reads the predictor, MLflow and
the monitoring database that are running now); Playwright drives Debian's headless Chromium (Playwright cannot
download its own browser here), waits until each page has finished and saves one full-page PNG per page into
``images/`` (``app-<page>.png``). The test form and batch pages are opened with ``?example=1`` so that they
show a scored client and a scored file rather than empty inputs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

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
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu"]

# The app is idle: a title is drawn, no script is running (Streamlit's status widget says "Stop" while one
# runs), no spinner shows, and every chart has drawn its canvas.
READY_CHECK = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main || !main.querySelector('h1')) return false;
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  if (status && /stop|running/i.test(status.innerText)) return false;
  if (document.querySelector('[data-testid="stSpinner"]')) return false;
  const charts = [...document.querySelectorAll('.vega-embed')];
  return charts.every(c => c.querySelector('canvas, svg'));
}"""
SETTLE_SECONDS = 2.0  # charts draw after the script ends
# Streamlit scrolls inside its main container, not the document: Playwright's full_page would not see it.
CONTENT_HEIGHT = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  return main ? main.scrollHeight : document.documentElement.scrollHeight;
}"""
MAX_HEIGHT = 4000


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
        "--client.toolbarMode=viewer",  # no developer menu in the pictures
    ]
    return services.ManagedProcess("streamlit", command, log_path)


def wait_until_idle(page: Page, timeout: float) -> bool:
    """Poll until the app has been idle for SETTLE_SECONDS; False if it still works after ``timeout`` s."""
    deadline, idle_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        page.wait_for_timeout(500)
        if page.evaluate(READY_CHECK):
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= SETTLE_SECONDS:
                return True
        else:
            idle_since = None
    return False


def capture(page: Page, url: str, out: Path, size: tuple[int, int], timeout: float) -> bool:
    """Load ``url``, wait (up to ``timeout`` s) until the app has finished, save a PNG; False on timeout."""
    width, height = size
    page.set_viewport_size({"width": width, "height": height})
    page.goto(url)
    ready = wait_until_idle(page, timeout)
    # Grow the viewport to show the whole page, and let the charts redraw at the new size.
    full = min(max(height, int(page.evaluate(CONTENT_HEIGHT))), MAX_HEIGHT)
    page.set_viewport_size({"width": width, "height": full})
    page.wait_for_timeout(SETTLE_SECONDS * 1000)
    page.screenshot(path=str(out))
    return ready


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("images"), help="folder of the PNGs (default: images)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for a page to finish")
    parser.add_argument("pages", nargs="*", help=f"only these pages (default: all of {', '.join(PAGES)})")
    args = parser.parse_args(argv)
    unknown = set(args.pages) - set(PAGES)
    if unknown:
        parser.error(f"unknown pages {sorted(unknown)}; choose from {list(PAGES)}")
    settings = config.load()
    executable = chromium()
    out = settings.resolve(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = services.free_port()
    proc = app_process(port, settings.work_dir / "logs" / "streamlit-screenshots.log").start()
    try:
        base = f"http://127.0.0.1:{port}"
        services.wait_http(f"{base}/_stcore/health", proc, timeout=60)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": args.width, "height": args.height}).new_page()
                for name in args.pages or PAGES:
                    path = out / f"app-{name}.png"
                    finished = capture(page, f"{base}/{PAGES[name]}", path, (args.width, args.height), args.timeout)
                    note = "" if finished else f" (still running after {args.timeout:.0f} s)"
                    print(f"{path} ({path.stat().st_size // 1024} KiB){note}")
            finally:
                browser.close()
    finally:
        proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
