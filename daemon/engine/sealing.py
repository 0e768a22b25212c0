"""Secret input values encrypted at rest: the store never holds a secret in clear.

The values of SECRET inputs, and of any input that holds a known secret (a subflow's
input rendered from `secret('NAME')`), are sealed before an execution's row is written:
encrypted with Fernet (AES-128-CBC with HMAC-SHA256, from the `cryptography` package) and
kept as text with a prefix, so the row keeps its shape. They are opened where tasks
need them (the render context) and nowhere else: the page and the API show them masked.

The key is `HEADWATER_SEALING_KEY` (a Fernet key: 32 random bytes, URL-safe base64) when
set, which processes sharing a database must share; otherwise one made on first start
in the data directory (`sealing.key`, readable by its owner only). Losing the key loses
the secret inputs of executions not yet run, nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from headwater.daemon.errors import HeadwaterError

PREFIX = "hw-sealed-v1:"  # marks a sealed value in an execution's inputs
KEY_FILE = "sealing.key"
KEY_VARIABLE = "HEADWATER_SEALING_KEY"


class Sealer:
    """Seals and opens input values with one key."""

    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise HeadwaterError(
                f"{KEY_VARIABLE} is not a Fernet key (32 random bytes, URL-safe base64)"
            ) from None

    def seal(self, value: str) -> str:
        return PREFIX + self._fernet.encrypt(value.encode()).decode()

    def open(self, value: Any) -> Any:
        """The clear value of a sealed one; anything else unchanged."""
        if not isinstance(value, str) or not value.startswith(PREFIX):
            return value
        try:
            return self._fernet.decrypt(value[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise HeadwaterError(
                "a sealed input cannot be opened: it was sealed with another key "
                f"(is {KEY_VARIABLE} the same on every process?)"
            ) from None

    def open_all(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        return {name: self.open(value) for name, value in inputs.items()}

    def seal_inputs(
        self, inputs: Mapping[str, Any], secret: Callable[[str, Any], bool]
    ) -> dict[str, Any]:
        """`inputs` with each text value for which `secret(name, value)` holds sealed."""
        return {
            name: self.seal(value) if isinstance(value, str) and secret(name, value) else value
            for name, value in inputs.items()
        }


def load_key(data_dir: Path, environ: Mapping[str, str]) -> bytes:
    """The sealing key: from the environment, else the data directory's (made once)."""
    given = environ.get(KEY_VARIABLE)
    if given:
        return given.strip().encode()
    path = data_dir / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    key = Fernet.generate_key()
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile: use that one
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "wb") as file:
        file.write(key)
    return key


def is_sealed(value: Any) -> bool:
    """Whether `value` is a sealed input (shown masked, never as its ciphertext)."""
    return isinstance(value, str) and value.startswith(PREFIX)
