"""Files ffctl creates: readable by their owner only, never through a symbolic link.

The store, ``notifications.jsonl``, ``reports/*.json``, ``ffctl.toml`` and the demo's files hold
customer data and webhook URLs, so they are created 0600 whatever the umask (022 would make them
world-readable). ``exclusive`` files (a new config, the demo's) are never overwritten, and a
link planted where one will be written (even a dangling one) is refused, never followed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ffctl.i18n import _

PRIVATE = 0o600
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def write_private(
    path: Path, text: str, *, exclusive: bool, encoding: str = "utf-8", newline: str | None = None
) -> None:
    """Write ``text`` to ``path`` as a private file; ``exclusive``: FileExistsError if anything is
    there (a file, a directory or a symlink), else an existing regular file is replaced in place."""
    flags = os.O_WRONLY | os.O_CREAT | _NOFOLLOW | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE)  # O_NOFOLLOW on an existing link: OSError (ELOOP)
    try:
        os.fchmod(fd, PRIVATE)  # a file from an older ffctl keeps no wider mode
        with os.fdopen(fd, "w", encoding=encoding, newline=newline) as fh:
            fd = -1
            fh.write(text)
    finally:
        if fd != -1:
            os.close(fd)


def private_folder(path: Path) -> None:
    """Create ``path`` (owner-only) if it does not exist; a symlink in its place is refused."""
    if path.is_symlink():
        raise FileExistsError(_("{path} is a symbolic link").format(path=path))
    path.mkdir(mode=0o700, exist_ok=True)
