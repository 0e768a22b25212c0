"""Webhook triggers over real HTTP: a real daemon (git repository, SQLite, workers and
its embedded WSGI server on 127.0.0.1) is called at
`/api/v1/executions/webhook/{namespace}/{flowId}/{key}` the way a sender would."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import pytest
from gitrepos import WorkingClone, make_remote
from inprocessdaemon import Answer, Http, serving

TOKEN = "webhook-tests-api-token"
KEY = "a-long-literal-webhook-key-1234"
SECRET_KEY = "key-from-the-secrets-file-5678"

ORDERS = f"""\
id: orders
namespace: shop
inputs:
  - id: order
    type: STRING
  - id: qty
    type: INT
    defaults: 1
tasks:
  - id: say
    type: core.log.Log
    message: >-
      order={{{{ inputs.order }}}} qty={{{{ inputs.qty }}}}
      method={{{{ trigger.method }}}}
      agent={{{{ trigger.headers['x-sender'][0] }}}}
      source={{{{ trigger.parameters.source[0] }}}}
triggers:
  - id: incoming
    type: core.trigger.Webhook
    key: {KEY}
    inputs:
      order: "{{{{ trigger.body.id }}}}"
      qty: "{{{{ trigger.body.qty ?? 1 }}}}"
    labels:
      via: webhook
  - id: from_secret
    type: core.trigger.Webhook
    key: "{{{{ secret('HOOK_KEY') }}}}"
    inputs:
      order: "{{{{ trigger.body ?? trigger.parameters.order[0] ?? null }}}}"
  - id: switched_off
    type: core.trigger.Webhook
    key: disabled-trigger-key-0000
    disabled: true
    inputs:
      order: never
"""


class HookHttp(Http):
    def hook(
        self,
        key: str,
        body: Any = None,
        method: str = "POST",
        flow: str = "shop/orders",
        query: str = "?source=shopify",
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        data = body if isinstance(body, bytes) else None
        sent = {"X-Sender": "tests", **(headers or {})}
        if body is not None and data is None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        return self.call(method, f"/api/v1/executions/webhook/{flow}/{key}{query}", data, sent)


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HookHttp]:
    root = tmp_path_factory.mktemp("webhooks")
    remote = make_remote(root / "remote.git")
    clone = WorkingClone.create(root / "work", remote)
    clone.write("flows/shop/orders.yaml", ORDERS)
    clone.commit("orders")
    clone.push()
    secrets = root / "secrets.env"
    secrets.write_text(f"HOOK_KEY={SECRET_KEY}\n")
    with serving(remote, root, token=TOKEN, secrets_file=secrets) as daemon:
        yield HookHttp(daemon)


def test_a_json_post_starts_the_flow_with_body_headers_and_parameters(http: HookHttp) -> None:
    answer = http.hook(KEY, {"id": "A-17", "qty": 3})
    assert answer.status == 200, answer.body
    started = answer.body
    assert (started["namespace"], started["flowId"]) == ("shop", "orders")
    assert started["state"]["current"] in ("CREATED", "RUNNING")
    done = http.finished(started["id"])
    assert done["state"]["current"] == "SUCCESS"
    assert done["inputs"] == {"order": "A-17", "qty": 3}
    assert {"key": "via", "value": "webhook"} in done["labels"]
    trigger = done["trigger"]
    assert trigger["type"] == "core.trigger.Webhook"
    assert trigger["id"] == "incoming"
    assert trigger["body"] == {"id": "A-17", "qty": 3}
    assert trigger["parameters"] == {"source": ["shopify"]}
    assert trigger["headers"]["x-sender"] == ["tests"]
    assert http.messages(started["id"]) == [
        "order=A-17 qty=3 method=POST agent=tests source=shopify"
    ]


def test_get_and_put_work_and_a_body_that_is_not_json_arrives_as_text(http: HookHttp) -> None:
    put = http.hook(SECRET_KEY, b"plain text order", method="PUT")
    assert put.status == 200, put.body
    done = http.finished(put.body["id"])
    assert done["trigger"]["body"] == "plain text order"
    assert done["inputs"]["order"] == "plain text order"
    get = http.hook(SECRET_KEY, method="GET", query="?order=G-1&source=a&source=b")
    assert get.status == 200, get.body
    done = http.finished(get.body["id"])
    assert done["trigger"]["method"] == "GET"
    assert done["trigger"]["parameters"] == {"order": ["G-1"], "source": ["a", "b"]}
    assert done["inputs"]["order"] == "G-1"
    refused = http.hook(SECRET_KEY, method="GET", query="")
    assert refused.status == 422  # no body, no order parameter: the required input is missing
    assert refused.body["errors"][0]["input"] == "order"
    broken = http.hook(KEY, method="GET")
    assert broken.status == 400
    assert broken.body["message"] == (
        "the webhook of shop.orders started nothing: {{ trigger.body.id }}: "
        "`trigger.body.id` is undefined: `trigger.body` is null, which has no keys"
    )


def test_unknown_flows_and_wrong_keys_get_the_same_404(http: HookHttp) -> None:
    answers = [
        http.hook("not-the-key-at-all-000000", {"id": "x"}),
        http.hook(KEY[:-1], {"id": "x"}),
        http.hook(KEY, {"id": "x"}, flow="shop/nope"),
        http.hook(KEY, {"id": "x"}, flow="other/orders"),
        http.hook("disabled-trigger-key-0000", {"id": "x"}),
        # The key as written in git is not the key: the secret's value is.
        http.hook(quote("{{ secret('HOOK_KEY') }}", safe=""), {"id": "x"}),
    ]
    assert {a.status for a in answers} == {404}
    assert {json.dumps(a.body) for a in answers} == {
        json.dumps({"message": "no webhook trigger matches this URL"})
    }
    search = http.call("GET", "/api/v1/executions/search?namespace=shop&size=100").body
    assert all(r["inputs"].get("order") != "x" for r in search["results"])


def test_the_body_is_capped(http: HookHttp) -> None:
    too_big = b"x" * (1024 * 1024 + 1)
    answer = http.hook(KEY, too_big)
    assert answer.status == 413
    assert "larger than 1048576 bytes" in answer.body["message"]


def test_credentials_and_keys_stay_out_of_executions_and_logs(
    http: HookHttp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = http.hook(
        KEY, {"id": "B-1"}, headers={"Authorization": f"Bearer {TOKEN}", "Cookie": "s=1"}
    )
    assert answer.status == 200
    done = http.finished(answer.body["id"])
    assert "authorization" not in done["trigger"]["headers"]
    assert "cookie" not in done["trigger"]["headers"]
    http.hook("a-wrong-key-for-the-log-000", {"id": "B-2"})
    http.hook(SECRET_KEY, b"")  # the secret trigger's input renders empty: refused, 422
    stored = json.dumps(done)
    for secret in (KEY, SECRET_KEY, TOKEN, "a-wrong-key-for-the-log-000"):
        assert secret not in caplog.text
        assert secret not in stored
    assert "webhook of shop.orders started execution" in caplog.text


def test_webhooks_need_no_token_but_the_api_does(http: HookHttp) -> None:
    assert http.hook(KEY, {"id": "C-1"}).status == 200
    start = http.call("POST", "/api/v1/executions/shop/orders", b"{}")
    assert start.status == 401


def test_a_read_only_daemon_starts_nothing_from_a_webhook(http: HookHttp) -> None:
    def orders() -> int:
        found = http.call("GET", "/api/v1/executions/search?namespace=shop&size=1").body
        return int(found["total"])

    before = orders()
    writable = http.daemon.web
    http.daemon.web = replace(writable, read_only=True)
    try:
        answer = http.hook(KEY, {"id": "D-1"})
    finally:
        http.daemon.web = writable
    assert answer.status == 403
    assert "read-only" in answer.body["message"]
    assert orders() == before
