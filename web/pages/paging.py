"""Reading a page's query string: page numbers, times and choices, forgiving on purpose.

A bad value in a link a person edited shows the page with that filter reset and a
note, rather than an error page: the page is for looking, not for an API contract.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Request

MAX_PAGE = 100_000


def page_of(request: Request) -> int:
    """The `page` parameter, counted from 1 (1 when missing or not a number)."""
    text = request.args.get("page", "")
    return min(int(text), MAX_PAGE) if text.isdigit() and int(text) >= 1 else 1


def number(request: Request, name: str) -> int | None:
    text = request.args.get(name, "")
    return int(text) if text.isdigit() else None


def moment(text: str) -> float | None:
    """A time from a filter field: `2024-01-31T10:00` (UTC), with seconds or a zone too."""
    text = text.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
