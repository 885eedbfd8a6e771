"""A per-user cache of validated configs, so a command does not re-validate an unchanged file.

Validation is the one owner of what a config means (``config.parse_config``); this module only
remembers its result. An entry is used when everything validation read is as it was: the file's
bytes (a hash, not its mtime, which misses same-second edits), the path it was read from and
the working directory (relative paths resolve against them), ffctl's own code that validates,
the language (warnings are translated), and each environment variable and file the validation
looked at (``record_env`` / ``record_file``). Anything else is a miss, and a miss only costs the
parse. Entries are pickles, so only files in a private folder owned by this user are read.

``FFCTL_CACHE_DIR`` names the folder (default ``$XDG_CACHE_HOME/ffctl`` or ``~/.cache/ffctl``);
``FFCTL_CACHE_DIR=off`` turns the cache off.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_VERSION = 1
_KEEP = 64  # entries kept: one per config path in use, old ones pruned
_CODE = ("config.py", "durations.py", "errors.py", "secrets.py", "profiles.py", "calendar.py", "configcache.py")

_inputs: dict[str, Any] | None = None  # what the validation in progress reads outside the file


def record_env(name: str) -> str | None:
    """``os.environ.get(name)``, remembered as an input of the validation in progress."""
    value = os.environ.get(name)
    if _inputs is not None:
        _inputs["env:" + name] = value
    return value


def record_file(path: str | os.PathLike) -> bool:
    """``Path(path).is_file()``, remembered as an input of the validation in progress."""
    found = Path(path).is_file()
    if _inputs is not None:
        _inputs["file:" + os.fspath(path)] = found
    return found


@contextmanager
def recording() -> Iterator[dict[str, Any]]:
    global _inputs
    outer, _inputs = _inputs, {}
    try:
        yield _inputs
    finally:
        _inputs = outer


def _inputs_hold(inputs: dict[str, Any]) -> bool:
    for key, value in inputs.items():
        kind, name = key.split(":", 1)
        now = os.environ.get(name) if kind == "env" else Path(name).is_file()
        if now != value:
            return False
    return True


def _folder() -> Path | None:
    given = os.environ.get("FFCTL_CACHE_DIR")
    if given is not None:
        return None if given.strip().lower() in ("", "off", "0", "no") else Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ffctl"


def _private(st: os.stat_result) -> bool:
    """Owned by this user and writable by no one else (a pickle from anyone else runs their code)."""
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _code_stamp() -> tuple:
    here = Path(__file__).resolve().parent
    stamp: list = [sys.version, _VERSION]
    for name in _CODE:
        try:
            st = (here / name).stat()
            stamp.append((name, st.st_mtime_ns, st.st_size))
        except OSError:
            stamp.append((name, None))
    from ffctl import i18n

    current = getattr(i18n, "current", None)
    language = current() if callable(current) else None
    stamp.append(language)
    catalogs = getattr(i18n, "CATALOGS", {})
    mo = catalogs.get(language) if isinstance(catalogs, dict) else None
    if mo is not None:
        try:
            st = Path(mo).stat()
            stamp.append((st.st_mtime_ns, st.st_size))
        except OSError:
            stamp.append(None)
    return tuple(stamp)


def _entry(file: str, raw: bytes) -> tuple[Path, str] | None:
    folder = _folder()
    if folder is None:
        return None
    where = os.path.abspath(file)
    key = hashlib.sha256(repr((file, where, os.getcwd(), _code_stamp())).encode() + b"\0" + raw).hexdigest()
    return folder / (hashlib.sha256(where.encode()).hexdigest()[:32] + ".pickle"), key


def get(file: str, raw: bytes):
    """The Config validated earlier from exactly these inputs, or None."""
    try:
        found = _entry(file, raw)
        if found is None:
            return None
        path, key = found
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            if not _private(os.fstat(fh.fileno())) or not _private(path.parent.stat()):
                return None
            stored_key, inputs, config = pickle.load(fh)
    except Exception:  # noqa: BLE001 - a damaged or foreign entry is a miss, never an error
        return None
    if stored_key != key or not _inputs_hold(inputs):
        return None
    return config


def put(file: str, raw: bytes, config, inputs: dict[str, Any]) -> None:
    """Remember ``config`` for these inputs; a folder that cannot be written means no cache.
    A config whose database URL holds a password is not cached: no second copy of a secret."""
    try:
        from ffctl.core.secrets import url_secrets

        if config.database_url and url_secrets(config.database_url):
            return
        found = _entry(file, raw)
        if found is None:
            return
        path, key = found
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(path.parent.stat()):
            return
        data = pickle.dumps((key, inputs, config), protocol=pickle.HIGHEST_PROTOCOL)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
        _prune(path.parent)
    except Exception:  # noqa: BLE001 - caching is an optimisation: never fail a command over it
        return


def _prune(folder: Path) -> None:
    entries = list(folder.glob("*.pickle"))
    if len(entries) <= _KEEP:
        return
    entries.sort(key=lambda p: p.stat().st_mtime)
    for old in entries[: len(entries) - _KEEP]:
        old.unlink(missing_ok=True)
