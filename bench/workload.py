"""Benchmark `report workload` over the store bench/report.py builds, against `report sla` in the same run.

    python bench/workload.py                                  # 1M orders, SQLite and PostgreSQL
    python bench/workload.py --orders 100000 --backend sqlite
    python bench/workload.py --record                         # also write the figures to docs/performance.md

Both reports read the task history (one row per node visit) over the same month: `sla_report`
(orders created in the month, the reference) and `workload_report` by role and by person
(visits that arrived or were completed in the month, plus what is open at the clock). The
figure that matters is the ratio: workload scans the visits four times by role (arrivals,
completions, their handling time, what is open) and twice by person, where `report sla` scans
them three times, and both count business time through the same SQL calendar table.
Beside them, `report kpi --by workflow` against `--by region` over the whole year.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from _perfdoc import record_section  # bench/_perfdoc.py
from report import CONFIG, NOW, Dialect, build, scratch_store  # bench/report.py builds the store

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MONTH = (datetime(2025, 12, 1, tzinfo=timezone.utc), datetime(2026, 1, 1, tzinfo=timezone.utc))


def timed(fn, runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench(backend: str, n: int, runs: int) -> dict:
    from ffctl.core.config import load_config
    from ffctl.core.kpi import Period, kpi_report, refresh_facts, sla_report
    from ffctl.core.workload import workload_report

    cfg = load_config(CONFIG)
    tmp = Path(tempfile.mkdtemp(prefix="ffctl-bench-workload-"))
    with scratch_store(backend, tmp) as (store, url):
        with store.engine.begin() as conn:
            build(conn, n, Dialect(store.is_sqlite))
        if not store.is_sqlite:
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        period = Period(*MONTH)
        with store.session() as s:
            visits = s.execute(__import__("sqlalchemy").text("SELECT COUNT(*) FROM task")).scalar_one()

        def run(fn, **kw):
            with store.session() as s:
                return fn(s, cfg, now=NOW, period=period, **kw)

        run(sla_report)  # warm the cache alike for all three
        sla, _rows = timed(lambda: run(sla_report), runs)
        role, roles = timed(lambda: run(workload_report, by="role"), runs)
        person, people = timed(lambda: run(workload_report, by="person"), runs)
        # report kpi --by workflow (read off the order, joined to the facts) against --by region (a fact column)
        refresh_facts(store, cfg, cuts=("region", "workflow"), now=NOW)

        def kpi(by):
            with store.session() as s:
                return kpi_report(s, cfg, now=NOW, by=by)

        kpi("region")
        region, _rows = timed(lambda: kpi("region"), runs)
        workflow, _rows = timed(lambda: kpi("workflow"), runs)
        return {
            "backend": backend,
            "orders": n,
            "visits": visits,
            "sla": sla,
            "role": role,
            "person": person,
            "roles": roles,
            "people": len(people),
            "kpi_region": region,
            "kpi_workflow": workflow,
        }


def describe(r: dict) -> str:
    busiest = max(r["roles"], key=lambda x: x["arrived"] or 0)
    return (
        f"| {r['backend']} | {r['orders']:,} | {r['visits']:,} | {r['sla']:.2f} s | {r['role']:.2f} s "
        f"({r['role'] / r['sla']:.1f}x) | {r['person']:.2f} s ({r['person'] / r['sla']:.1f}x) | "
        f"{busiest['group']}: {busiest['arrived_per_day']} in, {busiest['completed_per_day']} done per day | "
        f"{r['kpi_region']:.2f} s | {r['kpi_workflow']:.2f} s ({r['kpi_workflow'] / r['kpi_region']:.1f}x) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="write the figures to docs/performance.md")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    load = os.getloadavg()
    lines = []
    for backend in backends:
        r = bench(backend, args.orders, args.runs)
        lines.append(describe(r))
        print(lines[-1], flush=True)
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the start", flush=True)
    if args.record:
        command = "python bench/workload.py" + "".join(
            f" --{k} {v}" for k, v in (("orders", args.orders), ("backend", args.backend), ("runs", args.runs))
        )
        record_section(
            "workload.py",
            "\n".join(
                [
                    "## report workload",
                    "",
                    f"`{command}` on {datetime.now(timezone.utc):%Y-%m-%d} (load average {load[0]:.1f} at the start; "
                    "2 cores shared). The store of bench/report.py; one month (December) of its year; medians of "
                    f"{args.runs} runs; the reference is `report sla` over the same month in the same run.",
                    "",
                    "| backend | orders | node visits | report sla | workload by role | workload by person | busiest role "
                    "| kpi --by region | kpi --by workflow |",
                    "|---|---:|---:|---:|---:|---:|---|---:|---:|",
                    *lines,
                    "",
                    "`report kpi --by workflow` reads each order's workflow off `orders` and joins it to the facts "
                    "(no copy in `order_fact`, so no migration and no rebuild), so it takes the generic path of the "
                    "product and category cuts rather than the indexed one of `--by region` (whole year, after the facts "
                    "were refreshed). A `workflow` column in `order_fact` (a migration, and a rebuild of the facts) would "
                    "put it on region's path.",
                ]
            ),
        )


if __name__ == "__main__":
    main()
