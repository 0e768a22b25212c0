"""Git webhook signatures: each provider's proof, good, bad, missing, wrong algorithm."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import urlencode

import pytest

from headwater.web import gitwebhook
from headwater.web.gitwebhook import Delivery, PayloadError, Provider

pytestmark = pytest.mark.unit

SECRET = "s3cret-for-tests"
BODY = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()
GOOD_HEX = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()


def signed(provider: Provider, proof: str | None, event: str = "push") -> dict[str, str]:
    """The headers `provider` sends, with `proof` as its signature (None: left out)."""
    names = gitwebhook.HEADERS[provider]
    headers = {names.event: event, names.deliveries[0]: "delivery-1"}
    if proof is not None:
        headers[names.signature] = proof
    return headers


def test_sign_is_hmac_sha256_in_hex() -> None:
    assert gitwebhook.sign(SECRET, BODY) == GOOD_HEX


# -- each provider: good, bad, missing ----------------------------------------------------
GOOD_PROOFS = {
    Provider.GITHUB: f"sha256={GOOD_HEX}",
    Provider.GITEA: GOOD_HEX,
    Provider.GITLAB: SECRET,
    Provider.GENERIC: f"sha256={GOOD_HEX}",
}


@pytest.mark.parametrize("provider", list(Provider))
def test_a_good_proof_passes(provider: Provider) -> None:
    assert gitwebhook.check(provider, signed(provider, GOOD_PROOFS[provider]), SECRET, BODY) is None


@pytest.mark.parametrize("provider", list(Provider))
def test_a_missing_proof_is_named(provider: Provider) -> None:
    problem = gitwebhook.check(provider, signed(provider, None), SECRET, BODY)
    assert problem is not None
    assert "missing" in problem
    assert gitwebhook.HEADERS[provider].signature in problem.lower()


@pytest.mark.parametrize("provider", list(Provider))
def test_a_proof_made_with_another_secret_fails(provider: Provider) -> None:
    other = hmac.new(b"not-the-secret", BODY, hashlib.sha256).hexdigest()
    proofs = {
        Provider.GITHUB: f"sha256={other}",
        Provider.GITEA: other,
        Provider.GITLAB: "not-the-secret",
        Provider.GENERIC: f"sha256={other}",
    }
    problem = gitwebhook.check(provider, signed(provider, proofs[provider]), SECRET, BODY)
    assert problem is not None
    assert "does not match" in problem
    assert SECRET not in problem


@pytest.mark.parametrize("provider", [Provider.GITHUB, Provider.GITEA, Provider.GENERIC])
def test_a_signature_of_another_body_fails(provider: Provider) -> None:
    proof = GOOD_PROOFS[provider]
    assert gitwebhook.check(provider, signed(provider, proof), SECRET, BODY + b" ") is not None


@pytest.mark.parametrize("provider", [Provider.GITHUB, Provider.GENERIC])
@pytest.mark.parametrize("prefix", ["sha1=", "sha512=", "", "sha256:", "md5="])
def test_a_wrong_algorithm_prefix_fails(provider: Provider, prefix: str) -> None:
    assert gitwebhook.check(provider, signed(provider, prefix + GOOD_HEX), SECRET, BODY)


def test_github_sha1_signature_alone_is_not_accepted() -> None:
    sha1 = hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest()
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature": f"sha1={sha1}"}
    problem = gitwebhook.check(Provider.GITHUB, headers, SECRET, BODY)
    assert problem == "the X-Hub-Signature-256 header is missing"


def test_upper_case_hex_and_header_names_are_accepted() -> None:
    headers = {"X-HUB-SIGNATURE-256": f"SHA256={GOOD_HEX.upper()}"}
    assert gitwebhook.check(Provider.GITHUB, headers, SECRET, BODY) is None


def test_gitea_wants_bare_hex() -> None:
    prefixed = signed(Provider.GITEA, f"sha256={GOOD_HEX}")
    assert gitwebhook.check(Provider.GITEA, prefixed, SECRET, BODY) is not None


def test_gitlab_token_is_compared_whole() -> None:
    for token in (SECRET[:-1], SECRET + "x", SECRET.upper(), "", "sha256=" + GOOD_HEX):
        assert not gitwebhook.verify_token(token, SECRET)
    assert gitwebhook.verify_token(SECRET, SECRET)
    assert not gitwebhook.verify_token("é" * 3, SECRET)  # non-ASCII: compared as bytes


def test_every_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(gitwebhook.hmac, "compare_digest", spy)
    for provider in Provider:
        assert (
            gitwebhook.check(provider, signed(provider, GOOD_PROOFS[provider]), SECRET, BODY)
            is None
        )
        assert gitwebhook.check(provider, signed(provider, GOOD_PROOFS[provider]), "x", BODY)
    assert len(calls) == 2 * len(Provider)
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)


# -- which provider, event and delivery ---------------------------------------------------
def test_identify_each_provider() -> None:
    assert gitwebhook.identify(
        {"X-GitHub-Event": "push", "X-GitHub-Delivery": "g-1", "X-Hub-Signature-256": "x"}
    ) == Delivery(Provider.GITHUB, "push", "g-1")
    assert gitwebhook.identify({"X-GitHub-Event": "ping"}) == Delivery(
        Provider.GITHUB, "ping", None
    )
    assert gitwebhook.identify(
        {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "u-1", "X-Gitlab-Token": "t"}
    ) == Delivery(Provider.GITLAB, "push", "u-1")
    assert gitwebhook.identify(
        {"X-Gitlab-Event": "Push Hook", "Idempotency-Key": "k-1", "X-Gitlab-Event-UUID": "u-1"}
    ) == Delivery(Provider.GITLAB, "push", "k-1")
    assert gitwebhook.identify({"X-Gitlab-Event": "Tag Push Hook"}) == Delivery(
        Provider.GITLAB, "Tag Push Hook", None
    )
    assert gitwebhook.identify(
        {"X-Headwater-Signature": "sha256=x", "X-Headwater-Delivery": "h-1"}
    ) == Delivery(Provider.GENERIC, "push", "h-1")
    assert gitwebhook.identify({"Content-Type": "application/json"}) is None


def test_gitea_is_recognised_although_it_sends_github_headers_too() -> None:
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "d",
        "X-Hub-Signature-256": f"sha256={GOOD_HEX}",
        "X-Gitea-Event": "push",
        "X-Gitea-Delivery": "d",
        "X-Gitea-Signature": GOOD_HEX,
    }
    delivery = gitwebhook.identify(headers)
    assert delivery == Delivery(Provider.GITEA, "push", "d")
    assert gitwebhook.check(Provider.GITEA, headers, SECRET, BODY) is None


# -- payloads ------------------------------------------------------------------------------
def test_push_ref_from_json_and_from_githubs_form_encoding() -> None:
    assert gitwebhook.push_ref(BODY, "application/json") == "refs/heads/main"
    form = urlencode({"payload": BODY.decode()}).encode()
    assert gitwebhook.push_ref(form, "application/x-www-form-urlencoded") == "refs/heads/main"


def test_push_ref_of_an_empty_body_or_no_ref_is_none() -> None:
    assert gitwebhook.push_ref(b"", None) is None
    assert gitwebhook.push_ref(b"{}", "application/json") is None


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"ref": 3}', b"\xff\xfe"])
def test_an_unreadable_payload_is_a_payload_error(body: bytes) -> None:
    with pytest.raises(PayloadError):
        gitwebhook.push_ref(body, "application/json")
