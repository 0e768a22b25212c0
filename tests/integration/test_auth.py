"""Sign-in, sessions, CSRF, read-only and read-needs-token, through Flask's test client.

The app is the real one on a real engine (see test_api.py's EngineServices); a tiny page
blueprint stands in for a page form, so the guard is tested apart from the pages.
"""

from __future__ import annotations

import logging
import re
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import EngineFactory
from engineservices import EngineServices
from flask import Blueprint, Flask, render_template_string
from flask.testing import FlaskClient
from test_api import AUTH, HELLO, REPOSITORY, SECRET, TOKEN, github, push
from werkzeug.test import TestResponse

from headwater.daemon.engine.engine import Engine
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.services import WebSettings
from headwater.web.app import create_app

FORM = """
{% if may_write() %}<button>Kill</button>{% endif %}
<form method="post" action="/test-page/act">
<input type="hidden" name="{{ csrf_field }}" value="{{ csrf_token() }}"></form>
"""


def page_blueprint(acted: list[str]) -> Blueprint:
    """A page with a form that changes something, standing in for the real pages."""
    page = Blueprint("test_page", __name__, url_prefix="/test-page")

    @page.get("/")
    def show() -> str:
        return render_template_string(FORM)

    @page.post("/act")
    def act() -> str:
        acted.append("done")
        return "done"

    return page


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    return make_engine(workers=1)


@pytest.fixture
def services(engine: Engine) -> EngineServices:
    web = WebSettings(REPOSITORY, "main", api_token=TOKEN, webhook_secret=SECRET)
    return EngineServices(engine, web)


class Browser:
    """A test client that keeps its cookies and knows the page's CSRF token."""

    def __init__(self, app: Flask, acted: list[str]) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.acted = acted

    def csrf(self, path: str = "/login") -> str:
        page = self.client.get(path).get_data(as_text=True)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found, page
        return found[1]

    def sign_in(self, token: str = TOKEN, next_path: str = "/") -> TestResponse:
        form = {"csrf_token": self.csrf(), "token": token, "next": next_path}
        return self.client.post("/login", data=form)

    def act(self, csrf: str | None = None) -> TestResponse:
        data = {"csrf_token": csrf} if csrf is not None else {}
        return self.client.post("/test-page/act", data=data)


def browser_for(services: EngineServices, **settings: Any) -> Browser:
    services.web = replace(services.web, **settings)
    acted: list[str] = []
    app = create_app(services)
    app.register_blueprint(page_blueprint(acted))
    return Browser(app, acted)


@pytest.fixture
def browser(services: EngineServices) -> Browser:
    return browser_for(services)


def session_cookie(response: TestResponse) -> str:
    found = [
        h for h in response.headers.getlist("Set-Cookie") if h.startswith("headwater_session=")
    ]
    assert found, response.headers
    return found[-1]


# -- signing in ----------------------------------------------------------------------------
def test_signing_in_sets_an_httponly_strict_session_cookie(browser: Browser) -> None:
    answer = browser.sign_in(next_path="/test-page/")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/test-page/"
    cookie = session_cookie(answer)
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert TOKEN not in cookie
    assert "<button>Kill</button>" in browser.client.get("/test-page/").get_data(as_text=True)


def test_over_https_the_cookie_is_secure(services: EngineServices) -> None:
    # behind an https proxy, under the name the daemon is told to answer to
    https = browser_for(services, allowed_hosts=("status.example.com",)).app.test_client()
    page = https.get("/login", base_url="https://status.example.com").get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found
    form = {"csrf_token": found[1], "token": TOKEN}
    answer = https.post("/login", data=form, base_url="https://status.example.com")
    assert answer.status_code == 302
    assert "Secure" in session_cookie(answer)


def test_a_wrong_token_does_not_sign_in_and_is_audited(
    browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="headwater.audit"):
        answer = browser.sign_in(token="guess")
    assert answer.status_code == 401
    assert "That token is not valid." in answer.get_data(as_text=True)
    assert "wrong token" in caplog.text
    assert "guess" not in caplog.text
    assert browser.act(browser.csrf()).status_code == 403
    assert browser.acted == []


def test_signing_in_needs_the_csrf_token(browser: Browser) -> None:
    answer = browser.client.post("/login", data={"token": TOKEN})
    assert answer.status_code == 400
    assert "CSRF" in answer.get_data(as_text=True)
    assert browser.act(browser.csrf()).status_code == 403


def test_after_sign_in_goes_only_to_this_site(browser: Browser) -> None:
    for target in ("//evil.example.com/x", "https://evil.example.com", "/\\evil.example.com"):
        assert browser.sign_in(next_path=target).headers["Location"] == "/", target


def test_signing_out_ends_the_session(browser: Browser) -> None:
    browser.sign_in()
    csrf = browser.csrf("/test-page/")
    assert browser.act(csrf).status_code == 200
    assert browser.client.post("/logout", data={"csrf_token": csrf}).status_code == 302
    assert browser.act(csrf).status_code == 400  # the old session and its token are gone
    assert browser.act(browser.csrf("/test-page/")).status_code == 403


def test_a_new_token_signs_everybody_out(services: EngineServices) -> None:
    browser = browser_for(services, session_secret="fixed-key")
    browser.sign_in()
    services.web = replace(services.web, api_token="a-new-token")
    assert browser.act(browser.csrf("/test-page/")).status_code == 403


# -- CSRF on page forms --------------------------------------------------------------------
def test_page_posts_need_the_csrf_token_of_the_session(browser: Browser) -> None:
    browser.sign_in()
    assert browser.act().status_code == 400
    assert browser.act("forged").status_code == 400
    other = browser_for_same_app(browser)
    assert browser.act(other.csrf("/test-page/")).status_code == 400  # someone else's token
    assert browser.acted == []
    assert browser.act(browser.csrf("/test-page/")).status_code == 200
    assert browser.acted == ["done"]


def browser_for_same_app(browser: Browser) -> Browser:
    return Browser(browser.app, browser.acted)


def test_a_signed_in_page_may_call_api_writes_with_the_csrf_header(browser: Browser) -> None:
    browser.sign_in()
    csrf = browser.csrf("/test-page/")
    assert browser.client.post("/api/v1/sync/suspend").status_code == 403
    answer = browser.client.post("/api/v1/sync/suspend", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 200
    cross_site = {"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}
    assert browser.client.post("/api/v1/sync/resume", headers=cross_site).status_code == 403
    elsewhere = {"X-CSRF-Token": csrf, "Origin": "https://evil.example.com"}
    assert browser.client.post("/api/v1/sync/resume", headers=elsewhere).status_code == 403


def test_bearer_calls_need_no_csrf_token(browser: Browser) -> None:
    assert browser.client.post("/api/v1/sync/suspend", headers=AUTH).status_code == 200


def test_without_a_token_cross_site_writes_are_refused(services: EngineServices) -> None:
    browser = browser_for(services, api_token=None)
    forged = browser.client.post(
        "/api/v1/sync/suspend", headers={"Origin": "https://evil.example.com"}
    )
    assert forged.status_code == 403
    assert "another site" in forged.json["message"]
    assert browser.client.post("/api/v1/sync/suspend").status_code == 200  # the CLI
    assert browser.act().status_code == 400  # page forms still need their token
    assert browser.act(browser.csrf("/test-page/")).status_code == 200


# -- read-only -----------------------------------------------------------------------------
def test_read_only_hides_buttons_and_refuses_page_writes(services: EngineServices) -> None:
    browser = browser_for(services, read_only=True)
    browser.sign_in()
    page = browser.client.get("/test-page/").get_data(as_text=True)
    assert "Kill" not in page
    answer = browser.act(browser.csrf("/test-page/"))
    assert answer.status_code == 403
    assert "read-only" in answer.get_data(as_text=True)
    assert browser.acted == []
    assert browser.client.post("/api/v1/sync", headers=AUTH).status_code == 403


# -- reading needs the token ---------------------------------------------------------------
def test_reading_can_require_the_token(services: EngineServices, engine: Engine) -> None:
    engine.deploy_source(HELLO, "flows/company/team/hello.yaml")
    browser = browser_for(services, read_requires_token=True)
    client = browser.client
    for path in ("/api/v1/flows/search", "/api/v1/executions/search", "/api/v1/sync", "/metrics"):
        refused = client.get(path)
        assert refused.status_code == 401, path
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert client.get(path, headers=AUTH).status_code == 200, path
    wrong = client.get("/api/v1/flows/search", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    page = client.get("/test-page/?x=1")
    assert page.status_code == 302
    assert page.headers["Location"] == "/login?next=/test-page/?x%3D1"
    for path in ("/healthz", "/login", "/api/v1/openapi.json"):
        assert client.get(path).status_code == 200, path
    body = push()
    webhook = client.post("/api/v1/git/webhook", data=body, headers=github(body))
    assert webhook.status_code == 202
    assert browser.sign_in(next_path="/test-page/?x=1").headers["Location"] == "/test-page/?x=1"
    assert client.get("/test-page/").status_code == 200
    assert client.get("/api/v1/flows/search").json["total"] == 1


def test_reading_needs_a_token_to_be_configured(services: EngineServices) -> None:
    services.web = replace(services.web, api_token=None, read_requires_token=True)
    with pytest.raises(HeadwaterError, match="HEADWATER_TOKEN"):
        create_app(services)


# -- the session key -----------------------------------------------------------------------
def test_the_session_key_is_made_once_per_data_directory(
    services: EngineServices, tmp_path: Path
) -> None:
    key_file = tmp_path / "session.key"
    first = browser_for(services, session_key_file=key_file)
    first.sign_in()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second = create_app(services)  # a restarted daemon: the same key, sessions survive
    assert second.secret_key == first.app.secret_key
    client = second.test_client()
    client.set_cookie("headwater_session", first.client.get_cookie("headwater_session").value)
    assert client.post("/api/v1/sync/suspend").status_code == 403  # no CSRF token: no
    csrf = re.search(
        r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)
    )
    assert csrf
    assert client.post("/api/v1/sync/suspend", headers={"X-CSRF-Token": csrf[1]}).status_code == 200


# -- the real pages ------------------------------------------------------------------------
def test_the_status_pages_are_guarded_like_any_page(services: EngineServices) -> None:
    browser = browser_for(services, read_requires_token=True)
    for path in ("/", "/flows", "/executions", "/syncs", "/executions/some-id"):
        answer = browser.client.get(path)
        assert answer.status_code == 302, path
        assert answer.headers["Location"].startswith("/login?next="), path
    kill = "/executions/some-id/kill"
    assert browser.client.post(kill).status_code == 302  # a stranger is sent to sign in
    open_page = browser_for(services, read_requires_token=False)
    assert open_page.client.post(kill).status_code == 400  # no CSRF token
    refused = open_page.client.post(kill, data={"csrf_token": open_page.csrf()})
    assert refused.status_code == 403  # not signed in
    assert "sign in" in refused.get_data(as_text=True)
