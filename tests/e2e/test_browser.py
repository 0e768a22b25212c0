"""The status page in a real browser: Debian's headless Chromium, driven by Playwright.

One `headwater up` serves the whole module: it watches a bare repository on disk, so a
`git push` from a working clone is all it takes to deploy. The browser signs in with the
daemon's token, like a person, and every assertion reads what that person would see:
text on the page, the state badge, log lines appearing while the execution runs.

With HEADWATER_SCREENSHOTS=DIR the run saves a 1280 px wide screenshot of each page into
DIR (docs/images holds the ones docs/web.md shows); otherwise it writes nothing. Without
Chromium the tests skip and say why, except under CI=true where that is a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    Locator,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)
from test_daemon import TOKEN, Repos, RunningDaemon, daemons, new_repos
from waiting import wait_until

CHROMIUM = Path(os.environ.get("HEADWATER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # tests may run as root in a container, where the sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",  # the daemon is on loopback; a proxy from the environment is not
]
SHOTS = os.environ.get("HEADWATER_SCREENSHOTS")  # a directory: save a screenshot of each page
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
AUTHOR = ("Ada Lovelace", "ada@example.com")
UI_TIMEOUT_MS = 15_000  # for anything the page should show (a deploy, an execution ending)
expect.set_options(timeout=UI_TIMEOUT_MS)


# -- flows ----------------------------------------------------------------------------------
GREET = """\
id: greet
namespace: team
description: Greets someone, loudly or not, and reads the notes they attach.
labels:
  owner: docs
inputs:
  - id: name
    type: STRING
    description: Who to greet
  - id: times
    type: INT
    min: 1
    max: 5
    defaults: 1
  - id: loud
    type: BOOLEAN
    defaults: false
  - id: color
    type: SELECT
    values: [red, green, blue]
  - id: notes
    type: FILE
    extension: .txt
    required: false
tasks:
  - id: hello
    type: core.log.Log
    message: "Hello {{ inputs.name }}, {{ inputs.times }} times, in {{ inputs.color }}"
  - id: volume
    type: core.flow.If
    condition: "{{ inputs.loud }}"
    then:
      - id: shout
        type: core.log.Log
        message: "HELLO {{ inputs.name | upper }}!"
    else:
      - id: whisper
        type: core.log.Log
        message: "(quietly) hello {{ inputs.name }}"
  - id: read_notes
    type: scripts.shell.Commands
    inputFiles:
      notes.txt: "{{ inputs.notes }}"
    commands:
      - 'echo "the notes say: $(cat notes.txt)"'
"""

COUNTDOWN_LINES = 8
COUNTDOWN = f"""\
id: countdown
namespace: team
description: Logs a line every 0.35 s, to watch a run live.
triggers:
  - id: every_morning
    type: core.trigger.Schedule
    cron: "0 6 * * *"
tasks:
  - id: count
    type: scripts.shell.Commands
    commands:
      - |
        for i in $(seq 1 {COUNTDOWN_LINES}); do
          echo "step $i of {COUNTDOWN_LINES}"
          sleep 0.35
        done
"""

WAREHOUSE = """\
id: warehouse
namespace: ops
description: Fails, the way a job fails when what it needs is down.
tasks:
  - id: check
    type: core.log.Log
    message: checking the warehouse
  - id: load
    type: scripts.shell.Commands
    commands:
      - 'echo "connecting to warehouse.internal:5432" && echo "connection refused" >&2 && exit 3'
"""

FLOWS = {
    "flows/team/greet.yaml": GREET,
    "flows/team/countdown.yaml": COUNTDOWN,
    "flows/ops/warehouse.yaml": WAREHOUSE,
}


# -- the browser and the daemon ---------------------------------------------------------------
def _unavailable() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return (
            f"no Chromium at {CHROMIUM}: run scripts/services.d/chromium (Debian's package) "
            "or point HEADWATER_CHROMIUM at one"
        )
    return None


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


def push(repos: Repos, files: dict[str, str], message: str, remove: tuple[str, ...] = ()) -> str:
    """Commit (dated now, by a person, so pages read naturally) and push; the sha."""
    repos.clone.write_many(files)
    for path in remove:
        repos.clone.remove(path)
    sha = repos.clone.commit(message, author=AUTHOR, date=int(time.time()))
    repos.clone.push()
    return sha


@dataclass
class Site:
    """The module's daemon, the repository it watches, and the commit it started on."""

    repos: Repos
    daemon: RunningDaemon
    first: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("site")
    repos = new_repos(root)
    first = push(repos, FLOWS, "Add greet, countdown and warehouse")
    with daemons(root) as start:
        yield Site(repos, start(str(repos.remote), watch=True), first)


@contextlib.contextmanager
def browsing(browser: Browser, site: Site, javascript: bool = True) -> Iterator[Page]:
    """A page in a fresh browser context: no cookies, not signed in."""
    context = browser.new_context(
        viewport=VIEWPORT, base_url=site.daemon.url, java_script_enabled=javascript
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    with browsing(browser, site) as fresh:
        yield fresh


def sign_in(page: Page, path: str) -> None:
    """Open `path`, follow "Sign in", give the token, and land back on `path`."""
    page.goto(path)
    page.locator("header.top").get_by_role("link", name="Sign in").click()
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(path) + r"\??$"))
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def shoot(page: Page, name: str) -> None:
    """Save the whole page as DIR/name.png when HEADWATER_SCREENSHOTS=DIR."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def reload_until(page: Page, selector: str, text: str, timeout: float = UI_TIMEOUT_MS) -> None:
    """Reload `page` until the element at `selector` contains `text` (pages without
    JavaScript, like the overview, show news on the next load)."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        page.reload()
        found = page.locator(selector)
        if found.count() and text in found.first.inner_text():
            return
        if time.monotonic() > deadline:
            shown = found.first.inner_text() if found.count() else "(no such element)"
            raise AssertionError(f"{selector} never showed {text!r}; it shows {shown!r}")
        time.sleep(0.1)


def deployed(page: Page) -> Locator:
    """The overview's "Deployed" fact: the commit, its message, author and times."""
    return page.locator("dt:text-is('Deployed') + dd")


# -- deploying ------------------------------------------------------------------------------
def test_a_push_deploys_and_the_overview_shows_the_commit(site: Site, page: Page) -> None:
    page.goto("/")
    expect(deployed(page).locator(f"code.sha[title='{site.first}']")).to_be_visible()
    expect(page.locator("dt:text-is('Status') + dd .badge").first).to_have_text("Synced")

    hello = (
        "id: hello\nnamespace: team\ntasks:\n  - id: say\n    type: core.log.Log\n    message: hi\n"
    )
    pushed = push(site.repos, {"flows/team/hello.yaml": hello}, "Add team.hello\n\nA greeting.")
    reload_until(page, "dt:text-is('Deployed') + dd", pushed[:7])
    expect(deployed(page)).to_contain_text("Add team.hello")
    expect(deployed(page)).not_to_contain_text("A greeting.")  # the first line only
    expect(deployed(page).locator(f"code.sha[title='{pushed}']")).to_be_visible()
    expect(page.locator("dt:text-is('Branch head')")).to_have_count(0)  # nothing pending
    newest = page.locator("table.syncs tbody tr").first
    expect(newest).to_contain_text("watch")
    expect(newest).to_contain_text("Succeeded")
    expect(newest.locator("td.num").nth(1)).to_have_text("1")  # added: team.hello

    page.get_by_role("link", name="Flows", exact=True).click()
    expect(page.locator("td.flow-id a", has_text="hello")).to_be_visible()


# -- executions -----------------------------------------------------------------------------
def execution_state(page: Page) -> Locator:
    return page.locator("#state .badge")


def log_lines(page: Page) -> Locator:
    return page.locator("#log-lines .line .msg")


def test_the_start_form_checks_the_inputs_and_starts_an_execution(
    site: Site, page: Page, tmp_path: Path
) -> None:
    sign_in(page, "/flows/team/greet")
    expect(page.locator("#topology svg")).to_contain_text("volume")
    expect(page.locator("#in-times")).to_have_value("1")  # the default
    page.locator("#in-name").fill("Ada")
    page.locator("#in-times").fill("3")
    page.locator("#in-loud").select_option("true")
    page.locator("#in-color").select_option("green")
    (tmp_path / "notes.csv").write_text("a,b\n")
    page.locator("#in-notes").set_input_files(tmp_path / "notes.csv")
    page.get_by_role("button", name="Start").click()

    expect(page.locator("#start .problem")).to_contain_text("nothing was started")
    expect(page.locator("#err-notes")).to_have_text("must be a .txt file, got 'notes.csv'")
    expect(page.locator("#in-name")).to_have_value("Ada")  # what was typed is kept
    expect(page.locator("#in-color")).to_have_value("green")
    shoot(page, "flow")
    (tmp_path / "notes.txt").write_text("bring snacks\n")
    page.locator("#in-notes").set_input_files(tmp_path / "notes.txt")
    page.get_by_role("button", name="Start").click()

    page.wait_for_url("**/executions/*")
    expect(execution_state(page)).to_have_text("SUCCESS")
    expect(log_lines(page)).to_have_text(
        ["Hello Ada, 3 times, in green", "HELLO ADA!", "the notes say: bring snacks"]
    )
    inputs = page.locator("#io section").first
    expect(inputs).to_contain_text("Ada")
    notes = inputs.get_by_role("link", name="notes.txt")
    download = page.request.get(notes.get_attribute("href") or "")
    assert (download.status, download.body()) == (200, b"bring snacks\n")


def test_the_logs_of_a_running_execution_follow_live_to_success(site: Site, page: Page) -> None:
    sign_in(page, "/flows/team/countdown")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/executions/*")
    page.evaluate("window.sameDocument = true")  # gone if the page were reloaded
    page.wait_for_function(
        """lines => {
            const shown = document.querySelectorAll('#log-lines .line').length;
            const state = document.querySelector('#state .badge').textContent.trim();
            return !['SUCCESS', 'FAILED'].includes(state) && shown > 0 && shown < lines;
        }""",
        arg=COUNTDOWN_LINES,
    )
    expect(execution_state(page)).to_have_text("SUCCESS")
    expected = [f"step {i} of {COUNTDOWN_LINES}" for i in range(1, COUNTDOWN_LINES + 1)]
    expect(log_lines(page)).to_have_text(expected)  # each line once, in order
    assert page.evaluate("window.sameDocument") is True
    expect(page.locator("tr[data-task='count']")).to_contain_text("SUCCESS")
    shoot(page, "execution")


def test_a_failing_execution_shows_its_error(site: Site, page: Page) -> None:
    sign_in(page, "/flows/ops/warehouse")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/executions/*")
    expect(execution_state(page)).to_have_text("FAILED")
    failed = page.locator("tr[data-task='load']")
    expect(failed).to_contain_text("FAILED")
    why = "command exited with code 3; last line on stderr: connection refused"
    expect(failed.locator(".bad")).to_have_text(why)
    expect(page.locator("#execution pre.errors")).to_contain_text(why)
    expect(page.locator("#log-lines")).to_contain_text("connection refused")
    expect(page.locator("tr[data-task='check']")).to_contain_text("SUCCESS")
    shoot(page, "execution-failed")


def test_the_start_form_works_without_javascript(browser: Browser, site: Site) -> None:
    with browsing(browser, site, javascript=False) as page:
        sign_in(page, "/flows/team/greet")  # the sign-in form posts and redirects
        page.locator("#in-name").fill("Grace")
        page.locator("#in-color").select_option("blue")
        page.get_by_role("button", name="Start").click()  # a plain form post, then a 303
        page.wait_for_url("**/executions/*")
        reload_until(page, "#state", "SUCCESS")  # no script follows it: a reload shows news
        expect(log_lines(page)).to_have_text(
            ["Hello Grace, 1 times, in blue", "(quietly) hello Grace", "the notes say: "]
        )


# -- what ran, and what did not deploy ------------------------------------------------------
def finished(daemon: RunningDaemon, execution_id: str) -> str:
    """The end state of an execution (waits for it)."""
    path = f"/api/v1/executions/{execution_id}"
    ended = wait_until(lambda: daemon.get(path)["state"]["endDate"] and daemon.get(path))
    return str(ended["state"]["current"])


def test_the_lists_and_the_overview_show_what_ran(site: Site, page: Page) -> None:
    ok = site.daemon.post("/api/v1/executions/team/greet", {"name": "Lin", "color": "red"})
    bad = site.daemon.post("/api/v1/executions/ops/warehouse")
    assert (ok.status, bad.status) == (200, 200), (ok.body, bad.body)
    ok_id, bad_id = ok.body["id"], bad.body["id"]
    assert (finished(site.daemon, ok_id), finished(site.daemon, bad_id)) == ("SUCCESS", "FAILED")

    page.goto("/executions")
    expect(page.locator(f"tr:has(a[href='/executions/{ok_id}'])")).to_contain_text("SUCCESS")
    expect(page.locator(f"tr:has(a[href='/executions/{bad_id}'])")).to_contain_text("FAILED")
    shoot(page, "executions")
    page.locator("label.chip", has_text="FAILED").click()
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"state=FAILED"))
    expect(page.locator(f"a[href='/executions/{bad_id}']")).to_be_visible()
    expect(page.locator(f"a[href='/executions/{ok_id}']")).to_have_count(0)
    states = page.locator("table.list tbody tr td:nth-child(3)")
    expect(states).not_to_have_count(0)
    assert set(states.all_inner_texts()) == {"FAILED"}

    page.get_by_role("link", name="Flows", exact=True).click()
    expect(page.locator("details.ns summary .ns-name")).to_have_text(["ops", "team"])
    greet = page.locator("tr", has=page.locator("td.flow-id a", has_text="greet"))
    expect(greet.locator(f"a.sq.st-success[href='/executions/{ok_id}']")).to_be_visible()
    expect(greet).to_contain_text("Greets someone")
    countdown = page.locator("tr", has=page.locator("td.flow-id a", has_text="countdown"))
    expect(countdown.locator(".trigger")).to_contain_text(
        "every_morning Schedule 0 6 * * * next in"
    )
    shoot(page, "flows")

    running = site.daemon.post("/api/v1/executions/team/countdown").body["id"]
    page.get_by_role("link", name="Overview", exact=True).click()
    expect(page.locator(f"a[href='/executions/{running}']")).to_be_visible()  # running now
    counts = page.locator("ul.counts")
    expect(counts.locator(".badge", has_text="SUCCESS")).to_be_visible()
    expect(counts.locator(".badge", has_text="FAILED")).to_be_visible()
    shoot(page, "overview")


REPORT = """\
id: report
namespace: team
tasks:
  - id: send
    type: core.log.Log
    message: "unclosed
"""
NIGHTLY = (
    "id: nightly\nnamespace: team\ntasks:\n  - id: a\n    type: core.log.Logg\n    message: hi\n"
)


def test_a_bad_commit_shows_its_errors_and_the_next_good_one_clears_them(
    site: Site, page: Page
) -> None:
    page.goto("/")
    good = deployed(page).locator("code.sha").get_attribute("title")
    bad = push(
        site.repos,
        {"flows/team/report.yaml": REPORT, "flows/team/nightly.yaml": NIGHTLY},
        "Add the nightly report",
    )
    reload_until(page, ".failure", "Why the last sync failed")
    expect(page.locator("dt:text-is('Status') + dd .badge").first).to_have_text("OutOfSync")
    expect(page.locator(".failure pre.errors")).to_have_text(
        "flows/team/nightly.yaml:5:11: error: tasks[0]: unknown task type 'core.log.Logg'; "
        "did you mean 'core.log.Log'?\n"
        "flows/team/report.yaml:6:14: error: invalid YAML: unclosed double quote: the string "
        'that starts here has no closing " (it runs to the end of the file); close it where '
        "the value ends\n"
    )
    expect(deployed(page).locator(f"code.sha[title='{good}']")).to_be_visible()  # kept
    head = page.locator("dt:text-is('Branch head') + dd")
    expect(head.locator(f"code.sha[title='{bad}']")).to_be_visible()
    expect(head).to_contain_text("it failed to deploy")
    shoot(page, "overview-failed-sync")

    fixed = push(
        site.repos,
        {"flows/team/nightly.yaml": NIGHTLY.replace("Logg", "Log")},
        "Fix the nightly report",
        remove=("flows/team/report.yaml",),
    )
    reload_until(page, "dt:text-is('Deployed') + dd", fixed[:7])
    expect(page.locator(".failure")).to_have_count(0)
    page.get_by_role("link", name="Syncs", exact=True).click()
    rows = page.locator("table.syncs tbody tr:not(.detail)")
    expect(rows.first).to_contain_text("Succeeded")
    failed = page.locator("table.syncs tbody tr.failed")
    expect(failed).to_have_count(1)
    expect(failed.locator("code.sha").nth(1)).to_have_attribute("title", bad)
    expect(page.locator("table.syncs tr.detail pre.errors")).to_contain_text(
        "flows/team/report.yaml:6:14: error: invalid YAML"
    )
    shoot(page, "syncs")
