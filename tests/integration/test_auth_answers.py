"""What a refused caller is told and what the audit log keeps; which pages a browser
counts as this site's own; where signing in may send a browser; the session key file.

The same real app on a real engine as test_auth.py, through Flask's test client.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from conftest import EngineFactory
from engineservices import EngineServices
from test_api import AUTH, REPOSITORY, SECRET, TOKEN
from test_auth import browser_for, session_cookie

from headwater.daemon.engine.engine import Engine
from headwater.daemon.errors import HeadwaterError
from headwater.daemon.services import WebSettings
from headwater.web.app import create_app

WRITE = "/api/v1/sync/suspend"


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    return make_engine(workers=1)


@pytest.fixture
def services(engine: Engine) -> EngineServices:
    web = WebSettings(REPOSITORY, "main", api_token=TOKEN, webhook_secret=SECRET)
    return EngineServices(engine, web)


# -- what a refused API caller is told -----------------------------------------------------
def test_a_call_without_a_token_is_told_how_to_send_one(services: EngineServices) -> None:
    answer = browser_for(services).client.post(WRITE)
    assert answer.status_code == 401
    assert answer.json is not None
    assert answer.json["message"] == "this call needs a token: send Authorization: Bearer <token>"
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="headwater"'


def test_a_wrong_token_is_refused_and_the_audit_log_says_who_tried(
    services: EngineServices, caplog: pytest.LogCaptureFixture
) -> None:
    client = browser_for(services).client
    with caplog.at_level(logging.WARNING, logger="headwater.audit"):
        answer = client.post(WRITE, headers={"Authorization": "Bearer a-guess"})
    assert answer.status_code == 401
    assert answer.json is not None
    assert answer.json["message"] == "the bearer token is not valid"
    challenge = 'Bearer realm="headwater", error="invalid_token"'
    assert answer.headers["WWW-Authenticate"] == challenge
    audited = [r.getMessage() for r in caplog.records if r.name == "headwater.audit"]
    assert audited == [f"refused POST {WRITE} from 127.0.0.1: wrong bearer token"]
    assert "a-guess" not in caplog.text


def test_a_read_only_daemon_says_why_it_refuses_a_write(services: EngineServices) -> None:
    answer = browser_for(services, read_only=True).client.post(WRITE, headers=AUTH)
    assert answer.status_code == 403
    assert answer.json is not None
    assert answer.json["message"] == "this daemon is read-only: it accepts no write calls"


# -- which pages are this site's own -------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed in the address bar, or a bookmark
        {"Origin": "http://localhost"},  # an older browser that sends only Origin
    ],
)
def test_a_signed_in_page_of_this_site_may_write(
    services: EngineServices, headers: dict[str, str]
) -> None:
    browser = browser_for(services)
    browser.sign_in()
    csrf = {"X-CSRF-Token": browser.csrf("/test-page/")}
    assert browser.client.post(WRITE, headers={**csrf, **headers}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain is another site's page
        {"Origin": "http://localhost:8081"},
    ],
)
def test_a_signed_in_page_of_another_site_may_not(
    services: EngineServices, headers: dict[str, str]
) -> None:
    browser = browser_for(services)
    browser.sign_in()
    csrf = {"X-CSRF-Token": browser.csrf("/test-page/")}
    assert browser.client.post(WRITE, headers={**csrf, **headers}).status_code == 403


# -- where signing in sends a browser ------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("////evil.example.com", "/"),  # the path `//evil.example.com`: another host
        ("relative/page", "/"),  # not a path of this site
        ("/a\x01b", "/"),  # a control character inside: not a URL a browser reads
        ("\x01/test-page/", "/test-page/"),  # controls at the ends are trimmed
        ("/executions/X", "/executions/X"),  # the path is kept as it was
    ],
)
def test_signing_in_goes_to_a_path_of_this_site_as_a_browser_reads_it(
    services: EngineServices, target: str, location: str
) -> None:
    assert browser_for(services).sign_in(next_path=target).headers["Location"] == location


def test_what_the_cookie_keeps_of_the_token_depends_on_the_servers_key(
    services: EngineServices,
) -> None:
    # A session cookie is signed, not encrypted: anyone holding one can read it. What it
    # keeps of the token is keyed with the server's secret, so it tells nothing to test
    # token guesses against.
    kept = []
    for secret in ("one-server-key", "another-server-key"):
        browser = browser_for(services, session_secret=secret)
        browser.sign_in()
        cookie = browser.client.get_cookie("headwater_session")
        assert cookie is not None
        app = browser.app
        serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
        kept.append(serializer.loads(cookie.value)["signed_in"])
    assert kept[0] != kept[1]
    assert TOKEN not in kept


def test_a_sign_in_lasts_twelve_hours(services: EngineServices) -> None:
    answer = browser_for(services).sign_in()
    expires = re.search(r"Expires=([^;]+)", session_cookie(answer))
    assert expires
    left = parsedate_to_datetime(expires[1]) - datetime.now(UTC)
    assert timedelta(hours=11) < left <= timedelta(hours=12, minutes=1)


def test_the_status_page_offers_to_sign_out_once_signed_in(services: EngineServices) -> None:
    browser = browser_for(services)
    assert "Sign in</a>" in browser.client.get("/").get_data(as_text=True)
    browser.sign_in()
    page = browser.client.get("/").get_data(as_text=True)
    assert "Sign out</button>" in page
    assert "Sign in</a>" not in page


def test_reading_that_needs_a_missing_token_is_refused_at_start(services: EngineServices) -> None:
    services.web = replace(services.web, api_token=None, read_requires_token=True)
    with pytest.raises(HeadwaterError) as error:
        create_app(services)
    assert str(error.value) == (
        "reading is set to need the token (HEADWATER_READ_REQUIRES_TOKEN), "
        "but no token is configured: set HEADWATER_TOKEN"
    )


# -- the session key file ------------------------------------------------------------------
def test_an_empty_session_key_file_is_named_in_the_error(
    services: EngineServices, tmp_path: Path
) -> None:
    key_file = tmp_path / "session.key"
    key_file.write_text("")
    services.web = replace(services.web, session_key_file=key_file)
    with pytest.raises(HeadwaterError, match="the session key file is empty; delete it") as error:
        create_app(services)
    assert str(key_file) in str(error.value)


# -- the bearer header ---------------------------------------------------------------------
def test_spaces_around_the_bearer_token_are_tolerated(services: EngineServices) -> None:
    client = browser_for(services).client
    answer = client.post(WRITE, headers={"Authorization": f"Bearer  {TOKEN} "})
    assert answer.status_code == 200


def test_another_scheme_is_no_token_at_all(services: EngineServices) -> None:
    client = browser_for(services).client
    answer = client.post(WRITE, headers={"Authorization": f"Basic {TOKEN}"})
    assert answer.status_code == 401
    assert answer.json is not None
    assert answer.json["message"].startswith("this call needs a token")


# -- writes from the page ------------------------------------------------------------------
def test_two_tabs_of_one_session_share_its_csrf_token(services: EngineServices) -> None:
    browser = browser_for(services)
    browser.sign_in()
    first_tab = browser.csrf("/test-page/")
    second_tab = browser.csrf("/test-page/")
    assert second_tab == first_tab
    assert browser.act(first_tab).status_code == 200


def test_a_cross_site_write_is_refused_and_audited(
    services: EngineServices, caplog: pytest.LogCaptureFixture
) -> None:
    browser = browser_for(services)
    browser.sign_in()
    headers = {"X-CSRF-Token": browser.csrf("/test-page/"), "Sec-Fetch-Site": "cross-site"}
    with caplog.at_level(logging.WARNING, logger="headwater.audit"):
        answer = browser.client.post(WRITE, headers=headers)
    assert answer.status_code == 403
    assert answer.json is not None
    assert answer.json["message"] == "a write from another site's page is refused"
    audited = [r.getMessage() for r in caplog.records if r.name == "headwater.audit"]
    assert audited == [f"refused cross-site POST {WRITE}"]


def test_an_api_write_from_the_page_without_the_csrf_header_says_so(
    services: EngineServices,
) -> None:
    browser = browser_for(services)
    browser.sign_in()
    answer = browser.client.post(WRITE)
    assert answer.status_code == 403
    assert answer.json is not None
    expected = "a write from the page must carry its CSRF token (X-CSRF-Token)"
    assert answer.json["message"] == expected


def test_a_page_form_without_its_csrf_token_says_what_to_do(services: EngineServices) -> None:
    browser = browser_for(services)
    browser.sign_in()
    page = browser.act().get_data(as_text=True)
    expected = (
        "the form has no valid CSRF token; reload the page and try again "
        "(the session may have expired)"
    )
    assert f"<p>{expected}</p>" in page


def test_a_page_write_refused_says_why(services: EngineServices) -> None:
    stranger = browser_for(services)
    refused = stranger.act(stranger.csrf("/test-page/")).get_data(as_text=True)
    assert "<p>sign in with the token first</p>" in refused
    read_only = browser_for(services, read_only=True)
    read_only.sign_in()
    refused = read_only.act(read_only.csrf("/test-page/")).get_data(as_text=True)
    assert "<p>this daemon is read-only: nothing can be changed from the page</p>" in refused


def test_a_read_only_daemon_still_lets_a_browser_sign_out(services: EngineServices) -> None:
    browser = browser_for(services, read_only=True)
    browser.sign_in()
    answer = browser.client.post("/logout", data={"csrf_token": browser.csrf("/test-page/")})
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/login"


@pytest.mark.parametrize("path", ["/test-page/", "/executions/X"])
def test_a_stranger_is_sent_to_sign_in_and_back_to_the_same_page(
    services: EngineServices, path: str
) -> None:
    answer = browser_for(services, read_requires_token=True).client.get(path)
    assert answer.status_code == 302
    assert answer.headers["Location"] == f"/login?next={path}"
