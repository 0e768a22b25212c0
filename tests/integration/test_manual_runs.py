"""Manual runs over real HTTP: `POST /api/v1/executions/{namespace}/{id}` on a real daemon
(git repository, SQLite, workers, its embedded WSGI server on 127.0.0.1) with inputs as
JSON, as form fields and as multipart files, and labels."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import pytest
from gitrepos import WorkingClone, make_remote
from inprocessdaemon import Answer, Http, serving

TOKEN = "manual-runs-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

SHIP = """\
id: ship
namespace: shop
labels:
  team: logistics
inputs:
  - id: order
    type: STRING
  - id: qty
    type: INT
    defaults: 1
  - id: express
    type: BOOLEAN
    defaults: false
  - id: manifest
    type: FILE
    required: false
tasks:
  - id: say
    type: core.log.Log
    message: "order={{ inputs.order }} qty={{ inputs.qty }} express={{ inputs.express }}"
  - id: read_manifest
    type: scripts.shell.Commands
    runIf: "{{ inputs.manifest is defined and inputs.manifest != null }}"
    inputFiles:
      manifest.txt: "{{ inputs.manifest ?? '' }}"
    commands:
      - cat manifest.txt
"""


class ShopHttp(Http):
    def start(
        self, body: bytes | None, kind: str | None, query: str = "", auth: bool = True
    ) -> Answer:
        headers = {**(AUTH if auth else {}), **({"Content-Type": kind} if kind else {})}
        return self.call("POST", f"/api/v1/executions/shop/ship{query}", body, headers)


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopHttp]:
    root = tmp_path_factory.mktemp("manual")
    remote = make_remote(root / "remote.git")
    clone = WorkingClone.create(root / "work", remote)
    clone.write("flows/shop/ship.yaml", SHIP)
    clone.commit("ship")
    clone.push()
    with serving(remote, root, token=TOKEN) as daemon:
        yield ShopHttp(daemon)


def labels_of(row: Mapping[str, Any]) -> dict[str, str]:
    return {item["key"]: item["value"] for item in row["labels"]}


def test_json_inputs_and_labels_from_the_body_and_the_query(http: ShopHttp) -> None:
    body = {"inputs": {"order": "A-1", "qty": "4"}, "labels": {"ticket": "OPS-7"}}
    answer = http.start(json.dumps(body).encode(), "application/json", "?labels=by:ada")
    assert answer.status == 200, answer.body
    done = http.finished(answer.body["id"])
    assert done["state"]["current"] == "SUCCESS"
    assert done["inputs"]["order"] == "A-1"
    assert done["inputs"]["qty"] == 4
    assert done["inputs"]["express"] is False
    assert labels_of(done) == {"team": "logistics", "ticket": "OPS-7", "by": "ada"}
    assert done["trigger"] is None
    assert "order=A-1 qty=4 express=false" in http.messages(done["id"])


def test_form_fields(http: ShopHttp) -> None:
    form = urlencode({"order": "F-2", "express": "true"}).encode()
    answer = http.start(form, "application/x-www-form-urlencoded")
    assert answer.status == 200, answer.body
    done = http.finished(answer.body["id"])
    assert done["inputs"]["express"] is True
    assert "order=F-2 qty=1 express=true" in http.messages(done["id"])


def test_multipart_fields_and_a_file(http: ShopHttp) -> None:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="order"\r\n\r\nM-3\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="manifest"; '
        f'filename="manifest.txt"\r\nContent-Type: text/plain\r\n\r\n'
        "12 boxes\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    answer = http.start(body, f"multipart/form-data; boundary={boundary}", "?labels=via:form")
    assert answer.status == 200, answer.body
    done = http.finished(answer.body["id"])
    assert done["state"]["current"] == "SUCCESS", done
    assert done["inputs"]["manifest"].endswith("/manifest.txt")
    assert labels_of(done)["via"] == "form"
    assert "12 boxes" in http.messages(done["id"])


def test_refusals_say_why_and_start_nothing(http: ShopHttp) -> None:
    def total() -> int:
        return int(http.call("GET", "/api/v1/executions/search?flowId=ship").body["total"])

    before = total()
    bad = http.start(json.dumps({"qty": "lots"}).encode(), "application/json")
    assert bad.status == 422
    assert {e["input"] for e in bad.body["errors"]} == {"order", "qty"}
    assert http.start(b"{}", "application/json", auth=False).status == 401
    unknown = http.call("POST", "/api/v1/executions/shop/nope", b"{}", AUTH)
    assert unknown.status == 404
    assert http.start(b"order=x", "text/plain").status == 415
    assert http.start(b"{}", "application/json", "?labels=nocolon").status == 400
    assert total() == before
