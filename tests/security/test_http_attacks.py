"""Attacks on the HTTP API and the page, each reproduced against a real daemon (git
repository, SQLite, workers) served by its own embedded WSGI server on 127.0.0.1, over
real sockets: DNS rebinding, an open redirect after sign-in, JSON nested 100,000 deep,
a signed git webhook body sent again, and the headers that keep the page from being
framed or made to run what it did not serve.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from gitrepos import WorkingClone, make_remote
from inprocessdaemon import serving
from waiting import wait_until

from headwater.daemon.daemon import Daemon
from headwater.web.headers import SECURITY_HEADERS

TOKEN = "attack-tests-token-with-32-chars-or-more"
SECRET = "attack-tests-webhook-secret"
KEY = "attack-tests-webhook-key-0123456789"
REBINDING = "rebind.attacker.example"  # a name that resolves to 127.0.0.1 after a page loads
NAMED = "status.example.com"  # the name an operator allows with --allowed-hosts
EVIL = "evil.example"
DEEP = 100_000  # levels of nesting in the bodies that used to end in 500
WAIT = 15.0  # seconds for a deploy or an execution; only a hang fails

HELLO = f"""\
id: hello
namespace: team
inputs:
  - id: name
    type: STRING
    defaults: world
tasks:
  - id: say
    type: core.log.Log
    message: "hello {{{{ inputs.name }}}}"
triggers:
  - id: hook
    type: core.trigger.Webhook
    key: {KEY}
"""


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class Site:
    """A daemon of this module, called over a socket with whatever headers a test sends."""

    def __init__(self, daemon: Daemon, clone: WorkingClone) -> None:
        self.daemon = daemon
        self.clone = clone
        self.port = daemon.port
        self.token = daemon.settings.token

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        host: str | None = None,
    ) -> Reply:
        """One request. `host` is the Host header (by default 127.0.0.1:port, as a browser
        on this machine sends it); the bearer token goes along when the daemon has one,
        unless the request carries a session cookie instead."""
        sent = {"Host": host or f"127.0.0.1:{self.port}", **(headers or {})}
        if self.token and "Cookie" not in sent:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=sent)
            answer = connection.getresponse()
            return Reply(answer.status, answer.headers, answer.read().decode("utf-8", "replace"))
        finally:
            connection.close()

    def get(self, path: str) -> Any:
        reply = self.call("GET", path)
        assert reply.status == 200, (path, reply.status, reply.text[:300])
        return reply.json()

    def post_json(self, path: str, body: bytes) -> Reply:
        return self.call("POST", path, body, {"Content-Type": "application/json"})

    def executions(self) -> int:
        return int(self.get("/api/v1/executions/search")["total"])

    def finished(self, execution_id: str) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            row: dict[str, Any] = self.get(f"/api/v1/executions/{execution_id}")
            return row if row["state"]["endDate"] else None

        return wait_until(ended, WAIT, f"execution {execution_id} to end")

    def deployed(self) -> str:
        return str(self.get("/api/v1/sync")["deployedCommit"])


def site_for(root: Any, **settings: Any) -> Iterator[Site]:
    remote = make_remote(root / "remote.git")
    clone = WorkingClone.create(root / "work", remote)
    clone.write("flows/team/hello.yaml", HELLO)
    clone.commit("hello")
    clone.push()
    with serving(remote, root, **settings) as daemon:
        yield Site(daemon, clone)


@pytest.fixture(scope="module")
def open_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A daemon on loopback with no token, the default: anyone on this machine may write."""
    yield from site_for(tmp_path_factory.mktemp("open"), allowed_hosts=[NAMED])


@pytest.fixture(scope="module")
def locked_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A daemon whose page and API need the token, and whose git webhooks are signed."""
    root = tmp_path_factory.mktemp("locked")
    yield from site_for(root, token=TOKEN, webhook_secret=SECRET, read_requires_token=True)


# -- DNS rebinding -------------------------------------------------------------------------
REBOUND_CALLS = [
    pytest.param("GET", "/", None, id="page"),
    pytest.param("GET", "/api/v1/executions/search", None, id="api-read"),
    pytest.param("POST", "/api/v1/executions/team/hello", b'{"name": "rebound"}', id="write"),
]


@pytest.mark.parametrize(("method", "path", "body"), REBOUND_CALLS)
def test_a_page_on_a_rebinding_name_can_neither_read_nor_start_flows(
    open_site: Site, method: str, path: str, body: bytes | None
) -> None:
    before = open_site.executions()
    headers = {"Content-Type": "application/json", "Origin": f"http://{REBINDING}"}
    host = f"{REBINDING}:{open_site.port}"
    reply = open_site.call(method, path, body, headers, host=host)
    assert reply.status == 400, reply.text[:300]
    assert f"does not answer to the name {host}" in reply.text
    assert "execution" not in reply.text.lower()  # nothing of the daemon's state is shown
    assert open_site.executions() == before


@pytest.mark.parametrize(
    "host",
    [
        f"{NAMED}",
        f"{NAMED}:8443",
        "localhost",
        "localhost:{port}",
        "127.0.0.1:{port}",
        "[::1]:{port}",
        "10.1.2.3:{port}",  # an address: no page of another site can send one (hosts.py)
    ],
)
def test_loopback_addresses_and_allowed_names_are_answered(open_site: Site, host: str) -> None:
    reply = open_site.call("GET", "/api/v1/sync", host=host.format(port=open_site.port))
    assert reply.status == 200, reply.text[:300]


@pytest.mark.parametrize(
    "host",
    [f"evil.{NAMED}", f"{NAMED}.{EVIL}", f"{NAMED}@{EVIL}", "localhost.{EVIL}", "127.0.0.1.nip.io"],
)
def test_names_that_only_look_allowed_are_refused(open_site: Site, host: str) -> None:
    assert open_site.call("GET", "/api/v1/sync", host=host.format(EVIL=EVIL)).status == 400


# -- the redirect after signing in ---------------------------------------------------------
NEXT_VARIANTS = [
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "/x\r\nSet-Cookie: planted=1",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/\\/evil.example",
    " //evil.example",
    "\x00//evil.example",
    "/\x0b/evil.example",
    "https://evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    "evil.example",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "/\t/\t/evil.example/\t",
]


class Browser:
    """A browser's cookie and the page's CSRF token, against a site that needs sign-in."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.cookie = ""

    def open(self, path: str) -> Reply:
        reply = self.site.call("GET", path, headers={"Cookie": self.cookie})
        assert reply.status != 500, reply.text[:300]
        cookie = reply.headers.get("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";")[0]
        return reply

    def sign_in(self, next_path: str) -> Reply:
        page = self.open(f"/login?next={quote(next_path, safe='')}")
        assert page.status == 200, page.text[:300]
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf, page.text
        form = urlencode({"csrf_token": csrf[1], "token": TOKEN, "next": next_path}).encode()
        headers = {"Cookie": self.cookie, "Content-Type": "application/x-www-form-urlencoded"}
        return self.site.call("POST", "/login", form, headers)


def lands_here(location: str) -> bool:
    """A browser following this Location stays on the site: it reads the URL as the WHATWG
    standard says (tabs and newlines dropped, a backslash is a slash), then finds no
    scheme and no host in it."""
    if any(ord(c) < 0x20 or c == "\x7f" for c in location):
        return False
    read = location.strip().replace("\\", "/")
    parts = urlsplit(read)
    return not parts.scheme and not parts.netloc and read.startswith("/")


@pytest.mark.parametrize("target", NEXT_VARIANTS)
def test_signing_in_never_sends_the_browser_to_another_site(locked_site: Site, target: str) -> None:
    answer = Browser(locked_site).sign_in(target)
    assert answer.status == 302, (answer.status, answer.text[:300])
    location = answer.headers["Location"]
    assert lands_here(location), repr(location)
    assert "planted" not in (answer.headers.get("Set-Cookie") or "")


def test_the_way_back_after_sign_in_from_a_tab_path_stays_on_the_site(locked_site: Site) -> None:
    browser = Browser(locked_site)
    asked = browser.open("/%09/evil.example")  # `/\t/evil.example` once decoded
    assert asked.status == 302
    login = urlsplit(asked.headers["Location"])
    assert login.path == "/login"
    target = parse_qs(login.query)["next"][0]
    assert target == "/\t/evil.example"
    location = browser.sign_in(target).headers["Location"]
    assert lands_here(location), repr(location)


def test_a_path_on_the_site_is_still_where_sign_in_leads(locked_site: Site) -> None:
    answer = Browser(locked_site).sign_in("/flows?namespace=team#list")
    assert answer.headers["Location"] == "/flows?namespace=team#list"


# -- security headers ----------------------------------------------------------------------
def test_pages_api_answers_files_and_errors_carry_the_security_headers(open_site: Site) -> None:
    execution = open_site.post_json("/api/v1/executions/team/hello", b"{}").json()["id"]
    open_site.finished(execution)
    paths = [
        "/",
        f"/executions/{execution}",
        "/flows/team/hello",
        "/login",
        "/static/headwater.js",
        "/api/v1/sync",
        "/api/v1/executions/nope",
        "/no/such/page",
    ]
    for path in paths:
        reply = open_site.call("GET", path)
        assert reply.status in (200, 404), (path, reply.status)
        for name, value in SECURITY_HEADERS.items():
            assert reply.headers.get(name) == value, (path, name, reply.headers.get(name))
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    policy = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert policy["script-src"] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in csp
    assert SECURITY_HEADERS["X-Frame-Options"] == "DENY"
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"


def test_pages_hold_nothing_inline_that_the_policy_would_block(open_site: Site) -> None:
    execution = open_site.post_json("/api/v1/executions/team/hello", b"{}").json()["id"]
    open_site.finished(execution)
    for path in ("/", "/flows", "/flows/team/hello", "/executions", f"/executions/{execution}"):
        page = open_site.call("GET", path).text
        scripts = re.findall(r"<script\b[^>]*>", page)
        assert all("src=" in tag for tag in scripts), (path, scripts)
        assert not re.search(r"\sstyle\s*=", page), path
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", page), path
        assert "<style" not in page, path


# -- JSON nested 100,000 deep --------------------------------------------------------------
def deep_array() -> bytes:
    return b"[" * DEEP + b"]" * DEEP


def deep_object() -> bytes:
    return b'{"a":' * DEEP + b"1" + b"}" * DEEP


def github_push(body: bytes, delivery: str | None) -> dict[str, str]:
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": f"sha256={signature}",
    }
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    return headers


@pytest.mark.parametrize("body", [deep_array(), deep_object()], ids=["array", "object"])
def test_deeply_nested_json_is_refused_on_every_route_that_reads_json(
    locked_site: Site, body: bytes
) -> None:
    ended = locked_site.post_json("/api/v1/executions/team/hello", b'{"name": "x"}').json()
    locked_site.finished(ended["id"])
    before = locked_site.executions()
    answers = {
        "start": locked_site.post_json("/api/v1/executions/team/hello", body),
        "replay": locked_site.post_json(f"/api/v1/executions/{ended['id']}/replay", body),
        "webhook trigger": locked_site.post_json(
            f"/api/v1/executions/webhook/team/hello/{KEY}", body
        ),
        "git webhook": locked_site.call(
            "POST", "/api/v1/git/webhook", body, github_push(body, str(uuid.uuid4()))
        ),
    }
    for route, reply in answers.items():
        assert reply.status == 400, (route, reply.status, reply.text[:300])
        assert "nests deeper than 64 levels" in reply.json()["message"], route
    assert locked_site.executions() == before
    assert locked_site.call("GET", "/healthz").status == 200


def test_json_nested_within_the_bound_is_still_taken(locked_site: Site) -> None:
    name = json.dumps({"name": "nested"})
    body = ('{"inputs": ' + name + ', "labels": {"depth": "ok"}}').encode()
    reply = locked_site.post_json("/api/v1/executions/team/hello", body)
    assert reply.status == 200, reply.text[:300]
    assert reply.json()["inputs"] == {"name": "nested"}


# -- a signed git webhook body sent again --------------------------------------------------
def test_a_signed_webhook_body_sent_again_under_another_delivery_id_syncs_nothing(
    locked_site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    clone = locked_site.clone
    clone.write("flows/team/hello.yaml", HELLO.replace("hello {{", "hi {{"))
    announced = clone.commit("announced")
    clone.push()
    body = json.dumps({"ref": "refs/heads/main", "after": announced}).encode()
    caplog.set_level(logging.INFO, logger="headwater.audit")

    first = locked_site.call("POST", "/api/v1/git/webhook", body, github_push(body, "d-first"))
    assert (first.status, first.json()["accepted"]) == (202, True)
    wait_until(lambda: locked_site.deployed() == announced, WAIT, "the announced commit")

    clone.write("flows/team/hello.yaml", HELLO.replace("hello {{", "hey {{"))
    unannounced = clone.commit("not announced: only a replay could deploy it")
    clone.push()
    for delivery in (str(uuid.uuid4()), None):  # a new id, then none at all
        again = locked_site.call("POST", "/api/v1/git/webhook", body, github_push(body, delivery))
        assert again.status == 202
        assert again.json()["accepted"] is False
        assert "received before" in again.json()["reason"]
    accepted = [r for r in caplog.records if r.getMessage().startswith("git webhook accepted")]
    assert len(accepted) == 1  # the replays asked for no sync
    assert locked_site.deployed() == announced

    fresh = json.dumps({"ref": "refs/heads/main", "after": unannounced}).encode()
    genuine = locked_site.call("POST", "/api/v1/git/webhook", fresh, github_push(fresh, "d-next"))
    assert genuine.json()["accepted"] is True  # the next real push is acted on
    wait_until(lambda: locked_site.deployed() == unannounced, WAIT, "the next push")
