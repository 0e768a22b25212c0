"""The Flask application factory: `create_app(services)` builds the web layer.

The daemon builds one app and serves it with its embedded WSGI server; tests build
one around a temporary data directory. The app holds no state of its own: everything
it shows comes from the store, everything it changes goes through `services`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from headwater.daemon import jsontext
from headwater.daemon.services import Services
from headwater.web import (
    api,
    auth,
    control_api,
    errors,
    headers,
    health,
    hosts,
    jsonbody,
    metrics,
    openapi,
    pages,
    triggers_api,
    webhook_trigger,
)
from headwater.web.seam import install

HERE = Path(__file__).resolve().parent
MAX_REQUEST_BYTES = 64 * 1024 * 1024
"""The largest request body (file inputs of a new execution); larger ones get 413."""


class JsonProvider(DefaultJSONProvider):
    sort_keys = False  # fields in the order the API documents them

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse with the depth bound (jsonbody.py): `request.get_json()` never recurses
        without end, and a body too deep is a ValueError like any bad JSON."""
        return jsonbody.loads(s)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        """Compact answers through orjson (`daemon/jsontext.py`): an execution with its
        task runs is serialised several times faster than by the standard library."""
        if kwargs.get("indent") is not None:  # Flask's debug mode asks for pretty JSON
            return super().dumps(obj, **kwargs)
        return jsontext.dumps(obj)


def create_app(services: Services, clock: Callable[[], float] = time.time) -> Flask:
    """A Flask app serving the JSON API and health checks for these `services`."""
    # Given paths: Flask cannot find them itself under the editable install's package map.
    app = Flask(__name__, root_path=str(HERE), instance_path=str(HERE / "instance"))
    app.json = JsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    install(app, services, clock)
    hosts.install(app, services.web)  # first: a request for another site's name goes no further
    auth.install(app, services.web)
    headers.install(app)
    errors.register(app)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(control_api.blueprint)
    app.register_blueprint(webhook_trigger.blueprint)
    app.register_blueprint(triggers_api.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(openapi.blueprint)
    app.register_blueprint(metrics.blueprint)
    app.register_blueprint(pages.blueprint)
    return app
