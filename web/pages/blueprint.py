"""The page's blueprint, its Jinja filters and what every template may use.

Templates are autoescaped (Flask's default for .html); nothing here marks text safe
except the topology SVG, which escapes every text it draws itself. `csrf_token()`,
`may_write()` and the sign-in helpers are template globals set by web/auth.py.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from headwater.web import serialize
from headwater.web.pages import display
from headwater.web.seam import now, services

blueprint = Blueprint("pages", __name__)

NAV = (
    ("pages.overview", "Overview"),
    ("pages.flows", "Flows"),
    ("pages.executions", "Executions"),
    ("pages.syncs", "Syncs"),
)


@blueprint.app_template_filter("ago")
def _ago(ts: float | None) -> str:
    return display.ago(ts, now())


blueprint.add_app_template_filter(display.clock, "clock")
blueprint.add_app_template_filter(display.span, "span")
blueprint.add_app_template_filter(display.short_sha, "sha")
blueprint.add_app_template_filter(display.first_line, "first_line")
blueprint.add_app_template_filter(display.state_class, "state_class")
blueprint.add_app_template_filter(display.pretty, "pretty")
blueprint.add_app_template_filter(display.trigger_name, "trigger_name")


@blueprint.context_processor
def _page_context() -> dict[str, Any]:
    settings = services().web
    return {
        "nav": NAV,
        "repository": serialize.public_repository(settings.repository),
        "branch": settings.branch,
        "read_only": settings.read_only,
        "now": now(),
        "all_states": display.ALL_STATES,
        "active_states": display.ACTIVE_STATES,
    }


def page(template: str, status: int = 200, **context: Any) -> ResponseReturnValue:
    return render_template(f"pages/{template}", **context), status


def missing(message: str) -> ResponseReturnValue:
    """A 404 page that says what is missing."""
    return page("missing.html", 404, message=message)
