"""The page's Content-Security-Policy and framing headers, as a real browser applies them:
Debian's headless Chromium (Playwright) against `headwater up` as a process.

What a person would notice: a script slipped into the page does not run, another site
cannot show the page in a frame, and the pages themselves (timelines, nesting, the live
script) still look and work as before, with no complaint from the browser.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonprocess import RunningDaemon, daemons, new_repos
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright
from waiting import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from test_browser import CHROMIUM, CHROMIUM_ARGS, _unavailable  # one place says which Chromium

NESTED = """\
id: nested
namespace: team
tasks:
  - id: outer
    type: core.flow.Sequential
    tasks:
      - id: inner
        type: core.flow.Sequential
        tasks:
          - id: deepest
            type: core.log.Log
            message: three levels down
  - id: after
    type: core.log.Log
    message: done
"""
WAIT_SECONDS = 15.0  # for an execution to end; only a hang fails
UI_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    reason = _unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    root = tmp_path_factory.mktemp("csp")
    repos = new_repos(root)
    repos.push({"flows/team/nested.yaml": NESTED})
    with daemons(root) as start:
        yield start(str(repos.remote))


@pytest.fixture(scope="module")
def execution(daemon: RunningDaemon) -> str:
    started = daemon.post("/api/v1/executions/team/nested").body["id"]
    wait_until(
        lambda: daemon.get(f"/api/v1/executions/{started}")["state"]["endDate"],
        WAIT_SECONDS,
        "the execution to end",
    )
    return str(started)


class Complaints:
    """What the browser says about the page's Content-Security-Policy."""

    def __init__(self, page: Page) -> None:
        self.messages: list[str] = []
        page.on("console", self._heard)

    def _heard(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.messages.append(message.text)


@pytest.fixture
def page(browser: Browser, daemon: RunningDaemon) -> Iterator[Page]:
    context = browser.new_context(base_url=daemon.url)
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_the_pages_work_under_the_policy_without_a_complaint(
    page: Page, daemon: RunningDaemon, execution: str
) -> None:
    complaints = Complaints(page)
    for path in ("/", "/flows", "/flows/team/nested", "/executions", "/syncs", "/login"):
        answer = page.goto(path)
        assert answer is not None and answer.ok, path
    page.goto(f"/executions/{execution}")
    bar = page.locator("svg.track rect.bar").first.bounding_box()
    assert bar is not None and bar["width"] > 0  # the timeline is drawn
    top = page.locator("tr[data-task='outer'] td.task span.mono").bounding_box()
    deepest = page.locator("tr[data-task='deepest'] td.task span.mono").bounding_box()
    assert top is not None and deepest is not None
    assert deepest["x"] > top["x"]  # nested task runs are indented
    assert complaints.messages == []


def test_a_script_slipped_into_the_page_does_not_run(page: Page, daemon: RunningDaemon) -> None:
    page.goto("/flows")
    complaints = Complaints(page)
    ran = page.evaluate(
        """() => {
            window.slipped = false;
            const script = document.createElement("script");
            script.textContent = "window.slipped = true";
            document.body.appendChild(script);
            const img = document.createElement("img");
            img.setAttribute("onerror", "window.slipped = true");
            img.src = "/no-such-image";
            document.body.appendChild(img);
            return window.slipped;
        }"""
    )
    assert ran is False
    wait_until(lambda: complaints.messages, WAIT_SECONDS, "the browser to report the block")
    assert page.evaluate("() => window.slipped") is False


def test_another_site_cannot_show_the_page_in_a_frame(page: Page, daemon: RunningDaemon) -> None:
    page.set_content(f'<iframe src="{daemon.url}/flows"></iframe>')  # waits for the frame too
    framed = page.frames[1]
    assert framed.locator("header.top").count() == 0  # the browser showed its error instead
    page.goto("/flows")
    assert page.locator("header.top").count() == 1  # the same page, not framed, shows
