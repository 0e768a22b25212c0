"""Who may read and who may write, on the JSON API and on the page.

The API: a write (`@write_call`) needs `Authorization: Bearer <token>` when a token is
configured; bearer calls need no CSRF token (a browser never attaches one by itself).
Nobody writes in read-only mode. Git webhooks prove themselves with their signature
(gitwebhook.py), not the token. Tokens are compared in constant time and never written
to a log or an answer.

The page: a person signs in at `/login` with the same token. That sets a signed session
cookie (HttpOnly, SameSite=Strict, Secure over https) holding a fingerprint of the token,
so changing the token signs everybody out. How pages use this module:

- Every `<form method="post">` carries
  `<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">`; JavaScript that
  posts sends the same value in an `X-CSRF-Token` header. A page POST without it is
  refused (400) before the view runs, so page views need no check of their own.
- A page POST that changes something is refused (403) in read-only mode and, when a
  token is configured, from anyone not signed in. Templates hide such buttons with
  `{% if may_write() %}`; `signed_in()` and `sign_in_enabled()` decide whether to show
  "Sign in" or "Sign out" (a POST form to `url_for('auth.logout')` with its CSRF field).
- A signed-in browser may also call API writes with its cookie plus the CSRF header,
  from the same origin only.
- With `read_requires_token`, every page redirects to `/login` and every API read
  answers 401, until the caller signs in or sends the bearer token. Health checks,
  webhooks, the sign-in page and the OpenAPI document stay open.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import BadRequest, Forbidden

from headwater.daemon.errors import HeadwaterError
from headwater.daemon.services import WebSettings
from headwater.web.errors import ApiError
from headwater.web.seam import services

audit = logging.getLogger("headwater.audit")

P = ParamSpec("P")
R = TypeVar("R")

CHALLENGE = 'Bearer realm="headwater"'
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_FIELD = "csrf_token"
"""The hidden form field that carries the CSRF token."""
CSRF_HEADER = "X-CSRF-Token"
"""The header that carries it on JavaScript calls."""
SESSION_COOKIE = "headwater_session"
SESSION_HOURS = 12  # a sign-in lasts this long without a visit
SESSION_KEY_BYTES = 32
# Paths anyone may read even when reading needs the token: supervisors, git hosts and
# webhook senders carry no token, and the sign-in page must be reachable to sign in.
OPEN_PATHS = ("/healthz", "/readyz", "/login", "/logout", "/api/v1/openapi.json")
OPEN_PREFIXES = ("/static/", "/api/v1/git/webhook", "/api/v1/executions/webhook/")
# What a browser drops from a URL anywhere, and trims from its ends (WHATWG URL standard).
_TAB_AND_NEWLINES = str.maketrans("", "", "\t\n\r")
_CONTROLS = "".join(map(chr, range(0x20))) + "\x7f"
_SIGNED_IN = "signed_in"  # session key: the fingerprint of the token signed in with
_CSRF = "csrf"  # session key: the CSRF token of this session

blueprint = Blueprint("auth", __name__)


# -- the bearer token ----------------------------------------------------------------------
def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer …` header, if there is one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _refuse_token(given: str | None) -> ApiError:
    if given is None:
        return ApiError(
            401,
            "this call needs a token: send Authorization: Bearer <token>",
            {"WWW-Authenticate": CHALLENGE},
        )
    audit.warning(
        "refused %s %s from %s: wrong bearer token",
        request.method,
        request.path,
        request.remote_addr,
    )
    return ApiError(
        401,
        "the bearer token is not valid",
        {"WWW-Authenticate": f'{CHALLENGE}, error="invalid_token"'},
    )


def _valid_bearer(settings: WebSettings) -> bool:
    """A bearer token was sent and it is the configured one (401 when it is wrong)."""
    given = bearer_token()
    if given is None or settings.api_token is None:
        return False
    if not token_matches(given, settings.api_token):
        raise _refuse_token(given)
    return True


# -- sessions ------------------------------------------------------------------------------
class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed cookie session, marked Secure whenever the request came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or super().get_cookie_secure(app)


def _fingerprint(token: str) -> str:
    """What a session remembers of the token: changing the token signs everybody out."""
    key = str(current_app.secret_key).encode()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()[:32]


def signed_in() -> bool:
    """This browser signed in with the current token (always true when there is no token)."""
    token = services().web.api_token
    if token is None:
        return True
    remembered = session.get(_SIGNED_IN)
    return isinstance(remembered, str) and hmac.compare_digest(remembered, _fingerprint(token))


def sign_in_enabled() -> bool:
    """A token is configured, so there is something to sign in with."""
    return services().web.api_token is not None


def may_write() -> bool:
    """Whether to show this visitor buttons that change something."""
    return not services().web.read_only and signed_in()


def csrf_token() -> str:
    """The CSRF token of this session, made on first use (a Jinja global for forms)."""
    token = session.get(_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[_CSRF] = token
    return token


def _csrf_valid() -> bool:
    expected = session.get(_CSRF)
    given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
    return isinstance(expected, str) and bool(given) and hmac.compare_digest(expected, given or "")


def _same_origin() -> bool:
    """The browser says the request comes from this site's own pages (or from no browser)."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    here = urlsplit(request.host_url)
    return origin == f"{here.scheme}://{here.netloc}"


# -- who may write -------------------------------------------------------------------------
def check_write() -> None:
    """Raise ApiError (403 read-only or cross-site, 401 no or wrong token) unless the
    caller may write: with the bearer token, or from a signed-in page with its CSRF token."""
    settings = services().web
    if settings.read_only:
        raise ApiError(403, "this daemon is read-only: it accepts no write calls")
    if _valid_bearer(settings):
        return
    if not _same_origin():
        audit.warning("refused cross-site %s %s", request.method, request.path)
        raise ApiError(403, "a write from another site's page is refused")
    if settings.api_token is None:
        return
    if signed_in():
        if _csrf_valid():
            return
        raise ApiError(403, f"a write from the page must carry its CSRF token ({CSRF_HEADER})")
    raise _refuse_token(bearer_token())


def write_call(view: Callable[P, R]) -> Callable[P, R]:
    """Decorate a view that changes something: it runs only for a caller who may write."""

    @functools.wraps(view)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
        check_write()
        return view(*args, **kwargs)

    return checked


# -- the guard before every request --------------------------------------------------------
def _open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _is_api(path: str) -> bool:
    return path.startswith("/api/") or path == "/metrics"


def guard() -> ResponseReturnValue | None:
    """Runs before every view: reading needs sign-in when so configured; page POSTs need
    their CSRF token, and a signed-in writer unless they sign in or out."""
    settings = services().web
    path = request.path
    if settings.read_requires_token and not _open_path(path):
        reader = _valid_bearer(settings) or signed_in()
        if not reader and _is_api(path):
            raise _refuse_token(None)
        if not reader:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    if request.method not in WRITE_METHODS or _is_api(path):
        return None
    if not _csrf_valid():
        raise BadRequest(
            "the form has no valid CSRF token; reload the page and try again "
            "(the session may have expired)"
        )
    if path in ("/login", "/logout"):
        return None
    if settings.read_only:
        raise Forbidden("this daemon is read-only: nothing can be changed from the page")
    if not signed_in():
        raise Forbidden("sign in with the token first")
    return None


# -- sign-in and sign-out ------------------------------------------------------------------
def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site, else `/`.

    The target is first read the way a browser reads a URL (the WHATWG URL standard):
    tabs and newlines anywhere are dropped, control characters and spaces at the ends
    are trimmed, and a backslash is a slash. Otherwise `/\t/evil.com` or `/\\evil.com`
    passes a check on the raw text and the browser goes to `//evil.com`, another site.
    What is left must be a path with no scheme and no host; the answer is that path as
    read, so the Location header never carries a control character either.
    """
    read = _as_browsers_read(target or "")
    parts = urlsplit(read)
    path = parts.path
    if parts.scheme or parts.netloc or not path.startswith("/") or path.startswith("//"):
        return "/"
    return urlunsplit(("", "", path, parts.query, parts.fragment))


def _as_browsers_read(url: str) -> str:
    """`url` as a browser reads it; empty when a control character is left inside."""
    url = url.translate(_TAB_AND_NEWLINES).strip(_CONTROLS + " ").replace("\\", "/")
    return "" if any(c in _CONTROLS for c in url) else url


@blueprint.get("/login")
def login() -> ResponseReturnValue:
    return render_template("login.html", next=_safe_next(request.args.get("next")), error=None)


@blueprint.post("/login")
def login_submit() -> ResponseReturnValue:
    expected = services().web.api_token
    target = _safe_next(request.form.get("next"))
    if expected is None:
        return redirect(target)
    given = request.form.get("token", "")
    if not given or not token_matches(given.strip(), expected):
        audit.warning("refused sign-in from %s: wrong token", request.remote_addr)
        page = render_template("login.html", next=target, error="That token is not valid.")
        return page, 401
    session.clear()  # a new session: a CSRF token planted before sign-in is not kept
    session.permanent = True
    session[_SIGNED_IN] = _fingerprint(expected)
    audit.info("signed in on the page from %s", request.remote_addr)
    return redirect(target)


@blueprint.post("/logout")
def logout() -> ResponseReturnValue:
    session.clear()
    return redirect(url_for("auth.login"))


# -- installing it -------------------------------------------------------------------------
def session_key(settings: WebSettings) -> str:
    """The key that signs session cookies: from settings, from the key file, or new.

    A key file is made once per data directory, readable by its owner only, so sessions
    outlive a restart; the key is never in git or in the settings a page shows.
    """
    if settings.session_secret:
        return settings.session_secret
    if settings.session_key_file is None:
        return secrets.token_hex(SESSION_KEY_BYTES)
    return _read_or_make_key(settings.session_key_file)


def _read_or_make_key(path: Path) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
        if not key:
            raise HeadwaterError(f"{path}: the session key file is empty; delete it") from None
        return key
    key = secrets.token_hex(SESSION_KEY_BYTES)
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(key + "\n")
    return key


def install(app: Flask, settings: WebSettings) -> None:
    """Sessions, the guard, sign-in routes and the template globals pages use."""
    if settings.read_requires_token and settings.api_token is None:
        raise HeadwaterError(
            "reading is set to need the token (HEADWATER_READ_REQUIRES_TOKEN), "
            "but no token is configured: set HEADWATER_TOKEN"
        )
    app.secret_key = session_key(settings)
    app.session_interface = SessionCookies()
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )
    app.before_request(guard)
    app.register_blueprint(blueprint)
    app.jinja_env.globals.update(
        csrf_token=csrf_token,
        csrf_field=CSRF_FIELD,
        may_write=may_write,
        signed_in=signed_in,
        sign_in_enabled=sign_in_enabled,
    )
