"""What schema 0005's audit guard costs the bulk writers on SQLite.

    python bench/audit_guard.py                 # 200,000 events, 3 rounds
    python bench/audit_guard.py --record        # also write the figures to docs/performance.md

The guard is a BEFORE INSERT trigger on ``event`` that refuses an insert over an existing id
(``REPLACE INTO event`` rewrote history). Each round writes the same events through
``audit.record_many``'s bulk path (the driver's executemany, as imports, allocation and the sweep
do) into a fresh migrated store with the trigger, and into one where it was dropped (the
reference), alternately; the ratio is the guard's cost. PostgreSQL's guard is a TRUNCATE
statement trigger: no per-row cost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _perfdoc import record_section  # bench/_perfdoc.py (bench/ is on sys.path when run)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SECTION = "## Audit guard (`bench/audit_guard.py`)"


def fresh_store(template: Path, folder: Path, guarded: bool):
    import sqlalchemy as sa

    from ffctl.core.store import Store

    path = folder / f"{'guarded' if guarded else 'bare'}-{time.perf_counter_ns()}.db"
    shutil.copy(template, path)
    store = Store(f"sqlite:///{path}")
    if not guarded:
        with store.session(write=True) as s:
            s.execute(sa.text("DROP TRIGGER event_no_replace"))
    return store


def write(store, events: list[dict]) -> float:
    from ffctl.core import audit

    started = time.perf_counter()
    with store.session(write=True) as s:
        audit.record_many(s, events)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="write the figures to docs/performance.md")
    args = parser.parse_args()
    from ffctl.core.store import Store

    folder = Path(tempfile.mkdtemp(prefix="ffctl-bench-guard-"))
    try:
        template = folder / "template.db"
        Store(f"sqlite:///{template}").upgrade()
        at = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
        events = [
            {
                "event": "entered",
                "at": at + timedelta(seconds=i),
                "actor": "bench",
                "order_id": f"SO-{i:07d}",
                "node": "credit_review",
                "detail": "owner finance_reviewer; SLA 30m, due 2026-11-23 09:30",
            }
            for i in range(args.events)
        ]
        guarded, bare = [], []
        for _ in range(args.rounds):
            for is_guarded, times in ((False, bare), (True, guarded)):
                store = fresh_store(template, folder, is_guarded)
                times.append(write(store, events))
                store.dispose()
        g, b = statistics.median(guarded), statistics.median(bare)
        load = os.getloadavg()[0]
        text = (
            f"{SECTION}\n\n{args.events:,} events through `audit.record_many`'s bulk path into a fresh SQLite "
            f"store, median of {args.rounds} (`python bench/audit_guard.py --rounds {args.rounds}`, 2 cores, load average {load:.1f} "
            f"at the end):\n\n| with the 0005 insert guard | without it (reference) | ratio |\n|---|---|---|\n"
            f"| {g:.2f} s ({args.events / g:,.0f} events/s) | {b:.2f} s | {g / b:.2f}x |\n"
        )
        print(text)
        if args.record:
            print(f"recorded in {record_section('audit_guard', text)}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
