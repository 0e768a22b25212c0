"""Sign-in over a real socket: the app behind the daemon's WSGI server (waitress), a
client with a cookie jar, as a browser would use it."""

from __future__ import annotations

import http.cookiejar
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest
from conftest import EngineFactory
from engineservices import EngineServices
from test_api import REPOSITORY, TOKEN
from waitress.server import create_server

from headwater.daemon.engine.engine import Engine
from headwater.daemon.services import WebSettings
from headwater.web.app import create_app


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the test reads the redirect itself


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    return make_engine(workers=1)


@pytest.fixture
def base_url(engine: Engine) -> Iterator[str]:
    web = WebSettings(REPOSITORY, "main", api_token=TOKEN, read_requires_token=True)
    server = create_server(create_app(EngineServices(engine, web)), host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()


def test_a_browser_signs_in_and_writes_with_its_session(base_url: str) -> None:
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar), NoRedirect()
    )

    def call(path: str, data: dict[str, str] | None = None, **headers: str) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(base_url + path, data=body, headers=headers)
        try:
            with browser.open(request, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    assert call("/api/v1/sync")[0] == 401
    assert call("/executions")[0] == 302
    status, page = call("/login?next=/api/v1/sync")
    assert status == 200
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    form = {"csrf_token": csrf[1], "token": TOKEN, "next": "/api/v1/sync"}
    assert call("/login", form)[0] == 302
    (cookie,) = [c for c in jar if c.name == "headwater_session"]
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite") == "Strict"
    assert not cookie.secure
    assert call("/api/v1/sync")[0] == 200  # reading with the session
    assert call("/api/v1/sync/suspend", {})[0] == 403  # a write without the CSRF token
    assert call("/api/v1/sync/suspend", {}, **{"X-CSRF-Token": csrf[1]})[0] == 403  # old one
    fresh = re.search(r'name="csrf_token" value="([^"]+)"', call("/login")[1])
    assert fresh
    status, answer = call("/api/v1/sync/suspend", {}, **{"X-CSRF-Token": fresh[1]})
    assert status == 200
    assert '"status":"Suspended"' in answer.replace(" ", "")
