"""JSON text in and out, fast: orjson where it can, the standard library where it cannot.

The store keeps structures in JSON columns and the API answers in JSON; both sit on the
hot paths (every task run read, every execution shown). orjson is several times faster
than the standard library's `json`. It refuses what no JSON reader after us would take
anyway, except integers beyond 64 bits, which the standard library writes: those
values go through it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

OPTIONS = orjson.OPT_NON_STR_KEYS  # keys that are not text are written as text, as json does


def dumps(value: Any) -> str:
    """Compact JSON text of `value`."""
    try:
        return orjson.dumps(value, option=OPTIONS).decode()
    except TypeError:  # an integer beyond 64 bits, or a type orjson does not know
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def dumps_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=OPTIONS)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # NaN or Infinity written by an older version
        return json.loads(text)
