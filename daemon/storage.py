"""Internal storage: files Headwater keeps (FILE inputs, output files), put and got by key.

The data directory holds them today; a shared store (object storage) is a second
implementation of the same four verbs when workers run on several machines. Keys are
paths like `company/team/etl/executions/<id>/outputs/<task run>/report.csv`; a file's
URI is `kestra:///<key>` (Kestra's form, so flows that pass URIs around keep working).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from headwater.daemon.errors import HeadwaterError

URI_PREFIX = "kestra:///"


class StorageError(HeadwaterError):
    pass


def key_of(uri_or_key: str) -> str:
    key = uri_or_key.removeprefix(URI_PREFIX).lstrip("/")
    parts = PurePosixPath(key).parts
    if not parts or any(p in ("..", ".") for p in parts):
        raise StorageError(f"not a valid internal storage key: {uri_or_key!r}")
    return "/".join(parts)


class LocalStorage:
    """Internal storage in a folder of the data directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _file(self, uri_or_key: str) -> Path:
        return self.root / key_of(uri_or_key)

    def put(self, key: str, data: bytes) -> str:
        target = self._file(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as out:
            out.write(data)
        os.replace(out.name, target)
        return URI_PREFIX + key_of(key)

    def put_file(self, key: str, path: Path) -> str:
        target = self._file(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(path, temporary)
        os.replace(temporary, target)
        return URI_PREFIX + key_of(key)

    def get(self, uri_or_key: str) -> bytes:
        try:
            return self._file(uri_or_key).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"no such file in internal storage: {uri_or_key}") from None

    def path(self, uri_or_key: str) -> Path:
        file = self._file(uri_or_key)
        if not file.is_file():
            raise StorageError(f"no such file in internal storage: {uri_or_key}")
        return file

    def delete(self, uri_or_key: str) -> None:
        self._file(uri_or_key).unlink(missing_ok=True)
