"""``make screenshots``: start the app against the running services and photograph every page.

Streamlit runs on a free local port with the active configuration (so it reads the predictor, MLflow and
the monitoring database that are running now); Debian's headless Chromium, driven over its DevTools
protocol, waits until each page has finished and saves one full-page PNG per page into ``images/``
(``app-<page>.png``). The test form and batch pages are opened with ``?example=1`` so that they show a
scored client and a scored file rather than empty inputs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from websockets.sync.client import connect  # Streamlit's own dependency

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
        "--client.toolbarMode=viewer",  # no developer menu in the pictures
    ]
    return services.ManagedProcess("streamlit", command, log_path)


class Browser:
    """Headless Chromium driven over the DevTools protocol: load a page, wait until the app is idle, capture.

    Chromium's one-shot ``--screenshot`` captures when *virtual* time runs out, which does not wait for the
    app's real work on the server (loading a model, querying MLflow): the shot would show a spinner.
    """

    def __init__(self, executable: str, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.profile = tempfile.TemporaryDirectory(prefix="chromium-")  # a fresh profile every run
        command = [
            executable,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={self.profile.name}",
            f"--window-size={width},{height}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.connection = contextlib.ExitStack()
        self.socket = self.connection.enter_context(connect(self._page_socket_url(), max_size=None, open_timeout=30))
        self.calls = itertools.count(1)

    def _page_socket_url(self, timeout: float = 60) -> str:
        port_file = Path(self.profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_file.is_file() and port_file.read_text().strip():
                port = port_file.read_text().split()[0]
                targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.process.returncode}")
            time.sleep(0.2)
        raise RuntimeError(f"chromium did not open its DevTools port within {timeout:.0f} s")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.calls)
        self.socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:  # skip the events until our answer arrives
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def page_is_ready(self) -> bool:
        result = self.call("Runtime.evaluate", expression=READY_CHECK, returnByValue=True)
        return bool(result.get("result", {}).get("value"))

    def capture(self, url: str, out: Path, timeout: float) -> bool:
        """Load ``url``, wait (up to ``timeout`` s) until the app has finished, save a PNG; False on timeout."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        self.call("Page.navigate", url=url)
        deadline, idle_since = time.monotonic() + timeout, None
        ready = False
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if self.page_is_ready():
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= SETTLE_SECONDS:  # charts draw after the script ends
                    ready = True
                    break
            else:
                idle_since = None
        # Streamlit scrolls inside its main container: grow the viewport to show the whole page.
        height = self.call("Runtime.evaluate", expression=CONTENT_HEIGHT, returnByValue=True)["result"]["value"]
        full = min(max(self.height, int(height)), MAX_HEIGHT)
        self.call(
            "Emulation.setDeviceMetricsOverride", width=self.width, height=full, deviceScaleFactor=1, mobile=False
        )
        time.sleep(SETTLE_SECONDS)  # let the charts redraw at the new size
        shot = self.call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(shot["data"]))
        return ready

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()
        services.stop_group(self.process.pid, timeout=10)
        self.profile.cleanup()


# The app is idle: a title is drawn, no script is running (Streamlit's status widget says "Stop" while one
# runs), no spinner shows, and every chart has drawn its canvas.
READY_CHECK = """(() => {
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main || !main.querySelector('h1')) return false;
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  if (status && /stop|running/i.test(status.innerText)) return false;
  if (document.querySelector('[data-testid="stSpinner"]')) return false;
  const charts = [...document.querySelectorAll('.vega-embed')];
  return charts.every(c => c.querySelector('canvas, svg'));
})()"""
SETTLE_SECONDS = 2.0
CONTENT_HEIGHT = """(() => {
  const main = document.querySelector('[data-testid="stMain"]');
  return main ? main.scrollHeight : document.documentElement.scrollHeight;
})()"""
MAX_HEIGHT = 4000


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
    browser = chromium()
    out = settings.resolve(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = services.free_port()
    proc = app_process(port, settings.work_dir / "logs" / "streamlit-screenshots.log").start()
    chrome: Browser | None = None
    try:
        base = f"http://127.0.0.1:{port}"
        services.wait_http(f"{base}/_stcore/health", proc, timeout=60)
        chrome = Browser(browser, args.width, args.height)
        for name in args.pages or PAGES:
            path = out / f"app-{name}.png"
            finished = chrome.capture(f"{base}/{PAGES[name]}", path, args.timeout)
            note = "" if finished else f" (still running after {args.timeout:.0f} s)"
            print(f"{path} ({path.stat().st_size // 1024} KiB){note}")
    finally:
        if chrome is not None:
            chrome.close()
        proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
