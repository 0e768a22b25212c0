"""Checks, at parse time, that a filter or function call fits the callable's signature.

Filters and functions are plain Python functions: `fn(runtime, value, *args, **kwargs)`
for filters, `fn(runtime, *args, **kwargs)` for functions. Their signature is the
single source of truth for arity and argument names, so a wrong call is a syntax
error with the expected arguments, and a template can never pass an argument name
the function does not declare.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import lru_cache
from typing import Any

FILTER_FIXED = 2  # runtime, value
FUNCTION_FIXED = 1  # runtime


@lru_cache(maxsize=2048)
def _parameters(function: Callable[..., Any], fixed: int) -> tuple[inspect.Parameter, ...]:
    return tuple(inspect.signature(function).parameters.values())[fixed:]


def parameter_names(function: Callable[..., Any], fixed: int) -> tuple[str, ...]:
    """The names of the parameters a template can pass, in order."""
    return tuple(p.name for p in _parameters(function, fixed))


def describe(function: Callable[..., Any], fixed: int) -> str:
    """The arguments a call takes, as a user would write them: `format, timeZone=…`."""
    words = []
    for param in _parameters(function, fixed):
        if param.kind is param.VAR_POSITIONAL:
            words.append(f"{param.name}…")
        elif param.default is param.empty:
            words.append(param.name)
        else:
            words.append(f"{param.name}=…")
    return ", ".join(words) if words else "no arguments"


@lru_cache(maxsize=4096)
def check_call(
    function: Callable[..., Any], fixed: int, positional: int, names: tuple[str, ...]
) -> str | None:
    """Why `positional` arguments plus the named ones do not fit `function`, or None."""
    params = _parameters(function, fixed)
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        slots = positional
    else:
        slots = len([p for p in params if p.kind is not p.KEYWORD_ONLY])
    if positional > slots:
        return f"too many arguments (takes {describe(function, fixed)})"
    known = {p.name: p for p in params if p.kind is not p.VAR_POSITIONAL}
    for name in names:
        if name not in known or name.startswith("_"):
            return f"no argument named '{name}' (takes {describe(function, fixed)})"
    filled = {p.name for p in params[:positional]}
    if filled & set(names):
        taken = sorted(filled & set(names))[0]
        return f"argument '{taken}' given twice"
    for param in params:
        needed = param.default is param.empty and param.kind is not param.VAR_POSITIONAL
        if needed and param.name not in filled and param.name not in names:
            return f"missing argument '{param.name}' (takes {describe(function, fixed)})"
    return None
