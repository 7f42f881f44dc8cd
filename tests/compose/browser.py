"""Browser checks of the stack's UIs, driven like a user: Mage's sign-in, a pipeline run started from Mage's
Triggers page and followed on its Runs page, and a client scored through the Streamlit test form.

A library for the stack tests (no tests in here). Playwright cannot download its own browser on these
machines: every check drives Debian's Chromium (``apt-get install chromium``), headless.

Mage 0.9.80's UI, as found by loading it (the selectors below depend on it):

- ``/sign-in`` has inputs with the placeholders "Email" and "Password" (no ``<label>``) and a button
  "Sign into Mage"; a wrong login leaves the page there with "Email/username and/or password invalid.".
  Signed in, the app keeps the user in ``localStorage["current_user"]`` (``owner: true`` for the owner).
- Off port 6789, open the UI as ``127.0.0.1:PORT``: for ``localhost`` the UI calls its API on port 6789.
- The pipeline list links each pipeline by name to ``/pipelines/<name>``, which redirects to its Triggers page.
- Triggers: "Run@once" (tooltip "Creates an @once trigger and runs pipeline immediately") opens a dialog
  "Run pipeline now"; its "Run now" creates a trigger with a random two-word name (POST
  ``/api/pipelines/<name>/pipeline_schedules``). The scheduler starts the run on its next loop
  (``SCHEDULER_TRIGGER_INTERVAL``, 10 s by default).
- Runs (``/pipelines/<name>/runs``) is a ``<table>`` that refreshes itself every 5 s; each row links its trigger
  to ``/pipelines/<name>/triggers/<id>``. The status column shows labels, not the API's statuses:
  initial "Ready", running "Running", completed "Done", failed "Failed", cancelled "Cancelled".
- Pages render a moment after the network is idle: wait for an element, not for ``networkidle``, before a
  screenshot (else it is blank).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Locator, Page, Playwright, Response, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu"]
VIEWPORT = {"width": 1400, "height": 900}
PAGE_TIMEOUT_S = 60.0  # Mage's first page load, and Streamlit's first run of a page, take seconds on 2 cores

# Mage's run status labels (RUN_STATUS_TO_LABEL in its front end)
MAGE_DONE = "Done"
MAGE_FINAL = {MAGE_DONE, "Failed", "Cancelled"}


def launch_chromium(playwright: Playwright, executable: str = CHROMIUM) -> Browser:
    """Debian's headless Chromium under Playwright (``playwright install`` cannot download a browser here)."""
    if not Path(executable).is_file():
        raise FileNotFoundError(f"{executable} not found: apt-get update && apt-get install -y chromium")
    return playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)


@contextmanager
def chromium_page(
    width: int = VIEWPORT["width"], height: int = VIEWPORT["height"], timeout_s: float = PAGE_TIMEOUT_S
) -> Iterator[Page]:
    """A fresh page (own profile, no cookies) in a new headless Chromium, closed on exit."""
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            context.set_default_timeout(timeout_s * 1000)
            yield context.new_page()
        finally:
            browser.close()


def save_screenshot(page: Page, screenshot_dir: Path | None, name: str, full_page: bool = False) -> Path | None:
    """Save ``name`` (a PNG) into ``screenshot_dir``; nothing when it is None."""
    if screenshot_dir is None:
        return None
    screenshot_dir.mkdir(parents=True, exist_ok=True)
    path = screenshot_dir / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def page_text(page: Page, limit: int = 2000) -> str:
    """What the page shows (its visible text, whitespace folded), cut to ``limit`` characters for a message."""
    try:
        text = page.locator("body").inner_text(timeout=5000)
    except PlaywrightError as exc:
        return f"<no text: {exc.message.splitlines()[0]}>"
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[:limit] + " …"


# ---- Mage ----------------------------------------------------------------------------------------------


def mage_login(page: Page, base_url: str, email: str, password: str, timeout_s: float = PAGE_TIMEOUT_S) -> None:
    """Sign in through Mage's sign-in form as the owner; AssertionError (with what the page showed) if not."""
    base = base_url.rstrip("/")
    page.goto(f"{base}/")  # Mage redirects to /sign-in when authentication is required
    email_box = page.get_by_placeholder("Email", exact=True)
    try:
        email_box.wait_for(timeout=timeout_s * 1000)
    except PlaywrightTimeoutError:
        raise AssertionError(f"no sign-in form at {page.url}; the page showed: {page_text(page)}") from None
    email_box.fill(email)
    page.get_by_placeholder("Password", exact=True).fill(password)
    page.get_by_role("button", name=re.compile(r"Sign into Mage")).click()

    invalid = page.get_by_text(re.compile(r"invalid", re.IGNORECASE))
    deadline = time.monotonic() + timeout_s
    while "/sign-in" in page.url:
        if invalid.count() and invalid.first.is_visible():
            raise AssertionError(f"Mage refused the login of {email}: {page_text(page)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"still on {page.url} {timeout_s:.0f} s after signing in: {page_text(page)}")
        page.wait_for_timeout(250)
    user = json.loads(page.evaluate("() => window.localStorage.getItem('current_user')") or "null")
    assert isinstance(user, dict) and user.get("owner") is True, (
        f"signed in, but not as the owner (current_user {user!r}) at {page.url}: {page_text(page)}"
    )


def _is_schedule_creation(pipeline: str) -> Callable[[Response], bool]:
    path = f"/api/pipelines/{pipeline}/pipeline_schedules"
    return lambda response: response.request.method == "POST" and response.url.split("?")[0].endswith(path)


def _trigger_run_once(page: Page, pipeline: str, timeout_s: float) -> dict[str, Any]:
    """Click "Run@once" (and "Run now" in the dialog that follows); the trigger Mage created."""
    run_once = page.get_by_role("button", name=re.compile(r"Run\s*@once"))
    run_once.wait_for(timeout=timeout_s * 1000)
    try:
        with page.expect_response(_is_schedule_creation(pipeline), timeout=timeout_s * 1000) as created:
            run_once.click()
            # 0.9.80 asks first, in a dialog "Run pipeline now" (older releases did not when there are no variables)
            with suppress(PlaywrightTimeoutError):
                page.get_by_role("button", name="Run now", exact=True).click(timeout=10_000)
    except PlaywrightTimeoutError:
        raise AssertionError(f"Run@once created no trigger within {timeout_s:.0f} s: {page_text(page)}") from None
    response: Response = created.value
    body = response.json()
    schedule = body.get("pipeline_schedule") if isinstance(body, dict) else None
    assert response.ok and isinstance(schedule, dict), (
        f"Mage did not create the @once trigger (HTTP {response.status}): {str(body)[:1000]}"
    )
    return schedule


def _run_status(page: Page, row: Locator) -> str | None:
    """The status label in the run's row of the Runs table, None while the row is not there."""
    if row.count() == 0:
        return None
    headers = [text.strip() for text in page.get_by_role("columnheader").all_inner_texts()]
    if "Status" not in headers:
        return None
    try:
        return row.first.get_by_role("cell").nth(headers.index("Status")).inner_text(timeout=5000).strip()
    except PlaywrightError:  # the table re-rendered under us: read it on the next poll
        return None


def mage_run_pipeline_from_ui(
    page: Page,
    base_url: str,
    pipeline: str,
    screenshot_dir: Path | None = None,
    timeout_s: float = 300.0,
    poll_s: float = 2.0,
) -> str:
    """Run ``pipeline`` from Mage's UI (signed in already) and wait until its Runs page shows the run done.

    Opens the pipeline list (``mage-pipelines.png``), the pipeline's Triggers page, clicks "Run@once" (and
    "Run now"), then polls the Runs page for the new trigger's run until it is final or ``timeout_s`` passes
    (``mage-run-completed.png``, or ``mage-run-<status>.png`` when it did not complete). Returns the status
    label ("Done"); AssertionError with what the page showed if the run failed, was cancelled or timed out.
    """
    base = base_url.rstrip("/")
    page.goto(f"{base}/pipelines")
    link = page.get_by_role("link", name=pipeline, exact=True)
    try:
        page.get_by_role("columnheader", name="Name", exact=True).wait_for(timeout=PAGE_TIMEOUT_S * 1000)
        link.wait_for(timeout=5000)  # the rows come with the header
    except PlaywrightTimeoutError:
        save_screenshot(page, screenshot_dir, "mage-pipelines.png")
        raise AssertionError(f"no pipeline {pipeline!r} in Mage's pipeline list: {page_text(page)}") from None
    save_screenshot(page, screenshot_dir, "mage-pipelines.png")

    link.click()
    page.wait_for_url(re.compile(rf"/pipelines/{re.escape(pipeline)}/triggers"), timeout=PAGE_TIMEOUT_S * 1000)
    schedule = _trigger_run_once(page, pipeline, PAGE_TIMEOUT_S)
    name, schedule_id = str(schedule["name"]), schedule["id"]
    trigger_row = page.get_by_role("row").filter(has_text=name)
    try:
        trigger_row.first.wait_for(timeout=PAGE_TIMEOUT_S * 1000)
    except PlaywrightTimeoutError:
        raise AssertionError(f"trigger {name!r} is not listed on the Triggers page: {page_text(page)}") from None

    page.goto(f"{base}/pipelines/{pipeline}/runs")
    # The row whose "Trigger" cell links to our trigger: trigger names are random words and may repeat.
    row = page.get_by_role("row").filter(has=page.locator(f'a[href$="/pipelines/{pipeline}/triggers/{schedule_id}"]'))
    started = last_reload = time.monotonic()
    status: str | None = None
    while status not in MAGE_FINAL:
        if time.monotonic() - started > timeout_s:
            save_screenshot(page, screenshot_dir, "mage-run-timeout.png")
            raise AssertionError(
                f"the run of {pipeline!r} (trigger {name!r}, id {schedule_id}) did not finish within "
                f"{timeout_s:.0f} s: last status {status!r}; the Runs page showed: {page_text(page)}"
            )
        page.wait_for_timeout(poll_s * 1000)
        if time.monotonic() - last_reload > 30:  # the table polls by itself; reload now and then all the same
            page.reload()
            last_reload = time.monotonic()
        status = _run_status(page, row)

    row_text = re.sub(r"\s+", " ", row.first.inner_text()).strip()
    if status != MAGE_DONE:
        # The run's own page lists its block runs with their statuses: say which block failed.
        row.first.get_by_title(re.compile(r"block runs completed")).click()  # the "0 / 2" link
        page.get_by_text("Block runs", exact=True).first.wait_for(timeout=PAGE_TIMEOUT_S * 1000)
        page.get_by_role("columnheader", name="Block", exact=True).wait_for(timeout=PAGE_TIMEOUT_S * 1000)
        save_screenshot(page, screenshot_dir, f"mage-run-{status.lower()}.png")
        raise AssertionError(
            f"the run of {pipeline!r} (trigger {name!r}) ended {status!r}: {row_text}; "
            f"its page {page.url} showed: {page_text(page)}"
        )
    save_screenshot(page, screenshot_dir, "mage-run-completed.png")
    return status


# ---- Streamlit -----------------------------------------------------------------------------------------

PROBABILITY = re.compile(r"^(\d{1,3}(?:\.\d+)?)%$")


def streamlit_score_client(
    page: Page,
    base_url: str,
    numbers: dict[str, float] | None = None,
    screenshot_dir: Path | None = None,
    timeout_s: float = 120.0,
) -> str:
    """Score one client on the app's test form (``/Test_form``) and return the probability shown ("28.9%").

    The form's defaults are the model's medians and first categories; ``numbers`` sets number fields by
    their label first (e.g. ``{"age": 45}``). Saves ``app-test-form-scored.png`` into ``screenshot_dir``.
    AssertionError with what the page showed if the app reports an error or shows no probability.
    """
    page.goto(f"{base_url.rstrip('/')}/Test_form")
    submit = page.get_by_role("button", name="Score this client")
    alerts = page.get_by_role("alert")
    try:  # the first run of a page imports the model's libraries and asks the predictor for its schema
        submit.or_(alerts).first.wait_for(timeout=timeout_s * 1000)
    except PlaywrightTimeoutError:
        raise AssertionError(f"no test form after {timeout_s:.0f} s: {page_text(page)}") from None
    if not submit.is_visible():
        raise AssertionError(f"the test form did not load: {page_text(page)}")

    for label, value in (numbers or {}).items():
        field = page.get_by_role("spinbutton", name=label, exact=True)
        field.fill(str(value))
        field.press("Tab")
    submit.click()

    metric = page.get_by_test_id("stMetric").filter(has_text="Probability of subscribing")
    try:
        metric.or_(alerts).first.wait_for(timeout=timeout_s * 1000)
    except PlaywrightTimeoutError:
        raise AssertionError(f"no score {timeout_s:.0f} s after submitting the form: {page_text(page)}") from None
    if metric.count() == 0:  # st.error and st.warning have the role "alert"
        raise AssertionError(f"the app showed an error: {' | '.join(alerts.all_inner_texts())}")
    shown = metric.get_by_test_id("stMetricValue").inner_text().strip()
    match = PROBABILITY.match(shown)
    assert match and 0 <= float(match.group(1)) <= 100, f"not a probability: {shown!r} ({page_text(page)})"
    save_screenshot(page, screenshot_dir, "app-test-form-scored.png")
    return shown
