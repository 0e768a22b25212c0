"""The status page: server-rendered Flask and Jinja, plain HTML that works without
JavaScript, and a small script (static/headwater.js) that keeps running pages live.

The views read the store through `headwater.daemon.store.queries` and change things only
through the daemon's `Services`; importing the view modules registers their routes.
"""

from headwater.web.pages import executions, flows, overview
from headwater.web.pages.blueprint import blueprint

__all__ = ["blueprint", "executions", "flows", "overview"]
