"""Git push notifications: which provider sent one, whether it is signed, what it says.

Pure functions, no Flask: the view in `api.py` reads the request and answers.

- GitHub: `X-Hub-Signature-256: sha256=<HMAC-SHA256 hex>`, event `X-GitHub-Event`,
  delivery `X-GitHub-Delivery`.
- Gitea: `X-Gitea-Signature: <HMAC-SHA256 hex>`, `X-Gitea-Event`, `X-Gitea-Delivery`.
- GitLab: `X-Gitlab-Token: <the secret itself>`, `X-Gitlab-Event: Push Hook`, delivery
  `Idempotency-Key` (the same on retries) or `X-Gitlab-Event-UUID`.
- generic: `X-Headwater-Signature: sha256=<HMAC-SHA256 hex>`, `X-Headwater-Event`
  (push unless it says otherwise), `X-Headwater-Delivery`.

The HMAC is over the raw body, keyed with the webhook secret. Every comparison is
constant-time (`hmac.compare_digest`), on bytes. A push is acted on once per delivery id
and once per body (`delivery_key`, `body_key`), so neither a redelivery nor a captured
body sent again under another id starts a second sync. A push payload is only a hint: the
sync resolves the branch head itself, so only its `ref` is read here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs

from headwater.web import jsonbody

PUSH = "push"
PING = "ping"
MAX_DELIVERY_ID_CHARS = 200  # a longer delivery id is refused: it is stored


class Provider(StrEnum):
    GITHUB = "github"
    GITEA = "gitea"
    GITLAB = "gitlab"
    GENERIC = "generic"


@dataclass(frozen=True)
class ProviderHeaders:
    """The headers of one provider (names in lower case)."""

    signature: str
    event: str
    deliveries: tuple[str, ...]


HEADERS = {
    Provider.GITHUB: ProviderHeaders(
        "x-hub-signature-256", "x-github-event", ("x-github-delivery",)
    ),
    Provider.GITEA: ProviderHeaders("x-gitea-signature", "x-gitea-event", ("x-gitea-delivery",)),
    Provider.GITLAB: ProviderHeaders(
        "x-gitlab-token", "x-gitlab-event", ("idempotency-key", "x-gitlab-event-uuid")
    ),
    Provider.GENERIC: ProviderHeaders(
        "x-headwater-signature", "x-headwater-event", ("x-headwater-delivery",)
    ),
}
# Gitea also sends GitHub's headers, so it is recognised first.
_ORDER = (Provider.GITEA, Provider.GITLAB, Provider.GITHUB, Provider.GENERIC)
_PUSH_EVENTS = {
    Provider.GITHUB: "push",
    Provider.GITEA: "push",
    Provider.GITLAB: "Push Hook",
    Provider.GENERIC: "push",
}
SIGNATURE_HEADERS = (
    "X-Hub-Signature-256, X-Gitea-Signature, X-Gitlab-Token or X-Headwater-Signature"
)


class PayloadError(ValueError):
    """The body of a signed delivery is not a payload we can read."""


@dataclass(frozen=True)
class Delivery:
    """What the headers say about one notification."""

    provider: Provider
    event: str
    """`push`, `ping`, or the provider's own event name for anything else."""
    delivery_id: str | None


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names in lower case (HTTP header names are case-insensitive)."""
    return {name.lower(): value for name, value in headers.items()}


def identify(headers: Mapping[str, str]) -> Delivery | None:
    """The provider, event and delivery id, or None when no provider's headers are there."""
    found = lower_keys(headers)
    for provider in _ORDER:
        names = HEADERS[provider]
        if names.signature in found or names.event in found:
            return Delivery(
                provider, _event(provider, found.get(names.event)), _delivery(names, found)
            )
    return None


def _event(provider: Provider, raw: str | None) -> str:
    if raw is None and provider is Provider.GENERIC:
        return PUSH  # the generic hook has one meaning unless it says otherwise
    raw = (raw or "").strip()
    if raw == _PUSH_EVENTS[provider]:
        return PUSH
    return PING if raw == PING else raw


def _delivery(names: ProviderHeaders, headers: Mapping[str, str]) -> str | None:
    for name in names.deliveries:
        value = headers.get(name, "").strip()
        if value:
            return value
    return None


def delivery_key(delivery: Delivery) -> str | None:
    """What a delivery id is remembered by (`github:<id>`), or None when it has none."""
    if delivery.delivery_id is None:
        return None
    return f"{delivery.provider}:{delivery.delivery_id}"


def body_key(body: bytes) -> str:
    """What a signed body is remembered by, beside its delivery id.

    Providers sign the body and not the delivery id, so whoever captures one delivery can
    send its body again under a new id, or none; the body's digest names it all the same.
    The prefix is no provider's name, so it never equals a `delivery_key`.
    """
    return "body:sha256:" + hashlib.sha256(body).hexdigest()


def sign(secret: str, body: bytes) -> str:
    """The HMAC-SHA256 of `body` keyed with `secret`, in lower-case hex."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_hex(given: str | None, secret: str, body: bytes) -> bool:
    """A bare hex HMAC-SHA256 (Gitea)."""
    if not given:
        return False
    return hmac.compare_digest(given.strip().lower().encode(), sign(secret, body).encode())


def verify_prefixed(given: str | None, secret: str, body: bytes) -> bool:
    """`sha256=<hex HMAC-SHA256>` (GitHub, generic); any other algorithm is refused."""
    if not given:
        return False
    algorithm, _, digest = given.strip().partition("=")
    if algorithm.lower() != "sha256":
        return False
    return verify_hex(digest, secret, body)


def verify_token(given: str | None, secret: str) -> bool:
    """The secret itself, sent as a token (GitLab)."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8"))


def check(provider: Provider, headers: Mapping[str, str], secret: str, body: bytes) -> str | None:
    """None when the delivery proves it knows the secret; otherwise why not (no secret in it)."""
    name = HEADERS[provider].signature
    given = lower_keys(headers).get(name)
    if not given:
        return f"the {_title(name)} header is missing"
    if provider is Provider.GITLAB:
        good = verify_token(given, secret)
    elif provider is Provider.GITEA:
        good = verify_hex(given, secret, body)
    else:
        good = verify_prefixed(given, secret, body)
    return None if good else f"the {_title(name)} header does not match the body and secret"


def _title(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def push_ref(body: bytes, content_type: str | None) -> str | None:
    """The `ref` a push payload names (e.g. refs/heads/main), or None when it names none.

    GitHub may send the JSON form-encoded (`payload=…`); an empty body is a bare hint.
    """
    payload = _payload(body, content_type or "")
    if payload is None:
        return None
    if not isinstance(payload, dict):
        raise PayloadError("the payload is not a JSON object")
    ref = payload.get("ref")
    if ref is None:
        return None
    if not isinstance(ref, str):
        raise PayloadError("the payload's ref is not a string")
    return ref


def _payload(body: bytes, content_type: str) -> Any:
    if not body.strip():
        return None
    try:
        text = body.decode("utf-8")
        if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            fields = parse_qs(text)
            if "payload" not in fields:
                raise PayloadError("the form has no payload field")
            text = fields["payload"][0]
        return jsonbody.loads(text)
    except jsonbody.TooDeep as exc:
        raise PayloadError(f"the payload is refused: {exc}") from None
    except ValueError as exc:  # not UTF-8, or not JSON
        raise PayloadError(f"the payload is not JSON: {exc}") from None


def branch_ref(branch: str) -> str:
    return f"refs/heads/{branch}"
