"""Developer tool: write a new migration from the difference between models.py and head.

    python -m ffctl.migrations.autogen "add requisition priority"
    python -m ffctl.migrations.autogen --initial   # rewrite 0001 from scratch (before the first release only)

It upgrades a throw-away SQLite file to head and lets Alembic compare it with the models.
Review the generated file: autogenerate misses renames and server-side details.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from ffctl.core.store import MIGRATIONS, Store


def main(argv: list[str]) -> None:
    initial = "--initial" in argv
    words = [a for a in argv if not a.startswith("--")]
    message = words[0] if words else "initial schema"
    versions = MIGRATIONS / "versions"
    parked: list[tuple[Path, Path]] = []
    if initial:  # park the later revisions while 0001 is rewritten on its own
        for old in versions.glob("0001_*.py"):
            old.unlink()
        park = Path(tempfile.mkdtemp())
        for later in versions.glob("0*.py"):
            parked.append((later, park / later.name))
            later.rename(park / later.name)
    try:
        _generate(message, initial)
    finally:
        for original, moved in parked:
            moved.rename(original)


def _generate(message: str, initial: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'autogen.db'}")
        cfg = store._alembic_config()
        if not initial:
            command.upgrade(cfg, "head")
        rev_id = "0001" if initial else None
        command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
        store.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
