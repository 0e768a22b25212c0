"""Secrets: where `secret('NAME')` reads from, and masking their values wherever printed.

Order (DESIGN.md): a secrets file outside git (path in settings; `NAME=value` lines or a
YAML/JSON map), then environment variables `SECRET_NAME` holding the value base64-encoded
(the convention of Kestra's open-source edition). A missing secret fails the task
with the secret's name, never a value.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from headwater.daemon.errors import HeadwaterError

MASK = "******"
MIN_MASKED_LENGTH = 4  # shorter values would mask ordinary words


class SecretMissing(HeadwaterError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"secret '{name}' is not set (add it to the secrets file or set SECRET_{name} "
            "to its base64-encoded value)"
        )
        self.name = name


class Secrets:
    """Reads secrets; remembers every value read so logs and outputs can mask it."""

    def __init__(self, file: Path | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.file = file
        self.environ = os.environ if environ is None else environ
        self._file_values: dict[str, str] | None = None

    def get(self, name: str) -> str:
        value = self._from_file().get(name)
        if value is None:
            encoded = self.environ.get(f"SECRET_{name}")
            if encoded is not None:
                try:
                    value = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError):
                    raise HeadwaterError(
                        f"secret '{name}': SECRET_{name} is not valid base64-encoded UTF-8"
                    ) from None
        if value is None:
            raise SecretMissing(name)
        return value

    def is_set(self, name: str) -> bool:
        """Whether `secret(name)` finds a value (a deploy warns of the ones that do not)."""
        return name in self._from_file() or f"SECRET_{name}" in self.environ

    def _from_file(self) -> dict[str, str]:
        if self._file_values is None:
            self._file_values = _read_secrets_file(self.file) if self.file else {}
        return self._file_values


def _read_secrets_file(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("{"):
        data = json.loads(text)
    elif re.match(r"^\s*[A-Za-z_][A-Za-z0-9_]*=", text):
        data = dict(
            line.split("=", 1)
            for line in text.splitlines()
            if "=" in line and not line.startswith("#")
        )
    else:
        data = yaml.safe_load(text) or {}
    return {str(k): str(v) for k, v in data.items()}


def disguises(value: str) -> set[str]:
    """`value` and the forms it commonly takes when a task or template transforms it.

    A flow author may print a secret upper-cased, reversed, base64-encoded, URL-encoded
    or inside a JSON string without meaning to reveal it; each of those forms is masked
    too (issue 11). Transformations inside expressions are followed exactly instead (a
    value computed from a secret is a secret: `expressions.Tainted`).
    """
    raw = value.encode()
    forms = {
        value,
        value.upper(),
        value.lower(),
        value[::-1],
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    return {form for form in forms if len(form) >= MIN_MASKED_LENGTH}


class Masker:
    """Replaces known secret values (and their disguises) in text with ******."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, values: Iterable[str]) -> None:
        new: set[str] = set()
        for value in values:
            if len(value) >= MIN_MASKED_LENGTH:
                new |= disguises(value)
        with self._lock:
            if not new <= self._values:
                self._values |= new
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def mask(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None and text else text

    def mask_value(self, value: object) -> object:
        """Mask every string inside a JSON-like value, map keys included."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, list):
            return [self.mask_value(v) for v in value]
        if isinstance(value, dict):
            return {self.mask(str(k)): self.mask_value(v) for k, v in value.items()}
        return value
