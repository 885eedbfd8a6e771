"""Business-time deadlines against plain wall-clock additions, measured in the same run.

    python bench/business_calendar.py [--n 1000000] [--seed 7]

Computes deadlines for N (start, sla) pairs on the example office calendar (Asia/Shanghai,
Mon-Thu 09:00-18:00, Fri 09:00-12:00 + 13:00-17:00, holidays 2026-10-01/02) with
`BusinessCalendar.add`, then the same N `start + timedelta(seconds=sla)`. Starts are spread over
2026 in UTC (as the store keeps them); SLAs are the example config's node SLAs. The calendar
is fresh, so building its day index is part of the measured time.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a plain checkout

from ffctl.core.calendar import BusinessCalendar  # noqa: E402

SLAS = [10 * 60, 30 * 60, 4 * 3600, 48 * 3600]  # allocation, credit_review, tech_confirm, dispatch


def office() -> BusinessCalendar:
    day = [(9 * 60, 18 * 60)]
    return BusinessCalendar(
        timezone="Asia/Shanghai",
        hours={0: day, 1: day, 2: day, 3: day, 4: [(9 * 60, 12 * 60), (13 * 60, 17 * 60)]},
        holidays=frozenset({date(2026, 10, 1), date(2026, 10, 2)}),
    )


def pairs(n: int, seed: int) -> list[tuple[datetime, int]]:
    rng = random.Random(seed)
    year_start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    year = 365 * 86_400
    return [(year_start + timedelta(seconds=rng.randrange(year)), rng.choice(SLAS)) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    work = pairs(args.n, args.seed)

    add = office().add
    began = time.perf_counter()
    for start, sla in work:
        add(start, sla)
    business = time.perf_counter() - began

    began = time.perf_counter()
    for start, sla in work:
        start + timedelta(seconds=sla)
    wall = time.perf_counter() - began

    print(f"deadlines:             {args.n:,}")
    print(f"business calendar add: {business:.3f} s  ({business / args.n * 1e6:.2f} us per deadline)")
    print(f"wall-clock reference:  {wall:.3f} s  ({wall / args.n * 1e6:.2f} us per addition)")
    print(f"ratio:                 {business / wall:.1f}x")


if __name__ == "__main__":
    main()
