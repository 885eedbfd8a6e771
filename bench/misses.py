"""Benchmark `ffctl report misses` and `ffctl report kpi --by region` (with return_rate) over
bench/report.py's store plus returns for 2% of the orders (SPEC 9.5).

    python bench/misses.py                           # 1M orders, SQLite and PostgreSQL
    python bench/misses.py --orders 100000 --backend sqlite
    python bench/misses.py --record                  # also write the figures to docs/performance.md

The store is bench/report.py's (built in SQL, a year of orders with full history); on top of it
every shipped line is marked shipped and one unit of the first line of every 50th shipped order
comes back (four reasons). Then, in the same run:

- the first refresh of the report facts (the history was written behind ffctl's back: a full
  rebuild of order_fact, node_fact and miss_fact), and the miss_fact part of it alone (its
  DELETE + INSERT ... SELECT run again), so "without the misses" is the difference;
- `refresh_facts` + `misses.pareto` (the core of `report misses`, median of the runs) and the
  whole `ffctl report misses --format json` process;
- `refresh_facts` + `kpi_report(by="region")` with its return_rate and top reasons, and the
  whole `ffctl report kpi --by region --format json` process;
- the references: a plain `SELECT count(*)` over each table the reports read, and the process
  `ffctl --help` (what starting a process costs on this machine).
Goal: each report <= 3 s on SQLite and PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from _perfdoc import record_section  # bench/_perfdoc.py
from report import CONFIG, NOW, Dialect, build, count_all, scratch_store  # bench/report.py's store

REASONS = ("damaged", "wrong_size", "not_as_described", "changed_mind")


def add_returns(conn, d: Dialect) -> int:
    """Shipped orders' lines shipped in full; one unit of line 1 of every 50th shipped order comes back."""
    conn.exec_driver_sql(
        "UPDATE order_line SET allocated = qty, shipped = qty WHERE order_id IN "
        "(SELECT order_id FROM orders WHERE shipped_at IS NOT NULL)"
    )
    n = "CAST(substr(o.order_id, 3) AS INTEGER)"
    whens = " ".join(f"WHEN MOD({n}, 200) = {25 + 50 * k} THEN '{r}'" for k, r in enumerate(REASONS))
    reason = f"CASE {whens} END"
    later = "datetime(o.shipped_at, '+3 days')" if d.sqlite else "o.shipped_at + INTERVAL '3 days'"
    conn.exec_driver_sql(
        "INSERT INTO return_line (order_id, line_no, sku, qty, reason, returned_at) "
        f"SELECT o.order_id, 1, l.sku, 1, {reason}, {later} FROM orders o "
        f"JOIN order_line l ON l.order_id = o.order_id AND l.line_no = 1 "
        f"WHERE o.shipped_at IS NOT NULL AND MOD({n}, 50) = 25"
    )
    conn.exec_driver_sql(
        "INSERT INTO event (at, wall_at, actor, event, order_id) "
        "SELECT returned_at, returned_at, 'bench', 'returned', order_id FROM return_line"
    )
    return conn.exec_driver_sql("SELECT count(*) FROM return_line").scalar()


def median_time(fn, runs: int):
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def time_cli(url: str, args: list[str], runs: int) -> float:
    exe = shutil.which("ffctl", path=str(Path(sys.executable).parent)) or shutil.which("ffctl")
    env = dict(os.environ, FFCTL_CONFIG=str(CONFIG), FFCTL_DB=url, FFCTL_NOW=NOW.isoformat())
    return median_time(
        lambda: subprocess.run([exe, *args, "--format", "json"], env=env, check=True, capture_output=True), runs
    )[0]


def bench(backend: str, n: int, runs: int) -> dict:
    import sqlalchemy as sa

    from ffctl.core import misses
    from ffctl.core.config import load_config
    from ffctl.core.kpi import STORE, Period, _Sql, kpi_report, refresh_facts

    cfg = load_config(CONFIG)
    tmp = Path(tempfile.mkdtemp(prefix="ffctl-bench-misses-"))
    with scratch_store(backend, tmp) as (store, url):
        start = time.perf_counter()
        d = Dialect(store.is_sqlite)
        with store.engine.begin() as conn:
            build(conn, n, d)
            returns = add_returns(conn, d)
        if not store.is_sqlite:  # PostgreSQL's autovacuum would do this soon after a bulk load
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        build_seconds = time.perf_counter() - start
        count_all(store.engine)  # warm the cache for every measurement alike
        count_seconds, counts = count_all(store.engine)

        start = time.perf_counter()
        caught = refresh_facts(store, cfg, cuts=("region",), now=NOW)
        rebuild = time.perf_counter() - start
        start = time.perf_counter()
        with store.session(write=True) as s:  # the miss_fact part of that rebuild, alone
            s.execute(sa.text("DELETE FROM miss_fact"))
            s.execute(sa.text(misses.refresh_sql(_Sql(s, cfg.timezone, NOW), cfg, STORE)), {"tz": cfg.timezone})
        miss_part = time.perf_counter() - start

        def report_misses():
            refresh_facts(store, cfg, now=NOW)
            with store.session() as s:
                return misses.pareto(s, cfg, period=Period())

        def report_region():
            refresh_facts(store, cfg, cuts=("region",), now=NOW)
            with store.session() as s:
                return kpi_report(s, cfg, now=NOW, by="region")

        misses_seconds, pareto = median_time(report_misses, runs)
        region_seconds, rows = median_time(report_region, runs)
        cli_runs = max(1, runs // 2)
        misses_cli = time_cli(url, ["report", "misses"], cli_runs)
        region_cli = time_cli(url, ["report", "kpi", "--by", "region"], cli_runs)
        exe = shutil.which("ffctl", path=str(Path(sys.executable).parent)) or shutil.which("ffctl")
        help_cli = median_time(lambda: subprocess.run([exe, "--help"], check=True, capture_output=True), cli_runs)[0]
        return {
            "backend": backend,
            "orders": n,
            "returns": returns,
            "build": build_seconds,
            "counts": counts,
            "count": count_seconds,
            "rebuild": rebuild,
            "miss_part": miss_part,
            "caught": caught,
            "misses": misses_seconds,
            "misses_cli": misses_cli,
            "pareto": pareto,
            "region": region_seconds,
            "region_cli": region_cli,
            "rows": rows,
            "help_cli": help_cli,
        }


def describe(r: dict) -> str:
    c = r["count"]
    top = ", ".join(f"{p['group']} {p['orders']:,}" for p in r["pareto"][:3])
    rates = sorted(
        (x for x in r["rows"] if x["kpi"] == "return_rate" and x["actual"] is not None), key=lambda x: -x["actual"]
    )
    worst = rates[0] if rates else None
    worst_text = (
        (
            f"{worst['group']} {worst['actual'] * 100:.2f}% of {worst['count']:,} units, top reason "
            f"{(worst.get('top_reasons') or [{'reason': '-'}])[0]['reason']}"
        )
        if worst
        else "-"
    )
    return (
        f"{r['backend']}: built in {r['build']:.0f} s (orders {r['counts']['orders']:,}, "
        f"event {r['counts']['event']:,}; return lines {r['returns']:,})\n"
        f"  first refresh, a full rebuild of the facts ({r['caught']['orders']:,} orders)  {r['rebuild']:6.2f} s\n"
        f"    of which miss_fact (DELETE + INSERT ... SELECT, run again alone)   {r['miss_part']:6.2f} s\n"
        f"    so without the misses SQL                                     {r['rebuild'] - r['miss_part']:6.2f} s\n"
        f"  report misses (core: refresh + pareto, median)                    {r['misses']:6.2f} s  "
        f"{r['misses'] / c:5.2f}x count(*)\n"
        f"  ffctl report misses --format json (process)                       {r['misses_cli']:6.2f} s\n"
        f"  report kpi --by region with return_rate (core, median)            {r['region']:6.2f} s  "
        f"{r['region'] / c:5.2f}x count(*)\n"
        f"  ffctl report kpi --by region --format json (process)              {r['region_cli']:6.2f} s\n"
        f"  SELECT count(*) over the 7 tables (reference)                     {c:6.2f} s\n"
        f"  ffctl --help (reference: a process that starts and exits)         {r['help_cli']:6.2f} s\n"
        f"  e.g. top causes: {top}; highest return rate: {worst_text}"
    )


def record(results: list[dict], command: str) -> None:
    body = "\n\n".join(describe(r) for r in results)
    worst = max(max(r["misses"], r["misses_cli"], r["region"], r["region_cli"]) for r in results)
    n = results[0]["orders"]
    section = f"""## Misses and return rate (`bench/misses.py`)

`{command}` on CPython {platform.python_version()}, {platform.machine()}, {date.today().isoformat()}; 2 cores shared
with other jobs (load average {os.getloadavg()[0]:.1f} when the run ended). bench/report.py's store
({n:,} orders with full history) plus returns: one unit of every 50th shipped order (2%), four reasons,
with their `returned` events. Timed in the same run: the first refresh (a full rebuild of the facts,
miss_fact included) and the miss_fact part alone; `report misses` and `report kpi --by region`
(return_rate and its top reasons) as core calls (refresh + report, median) and as whole processes;
against a plain `SELECT count(*)` of the tables and an `ffctl --help` process.

```
{body}
```

Goal <= 3 s for each report on both backends: {"met" if worst <= 3 else "not met"} at {n:,} orders
(slowest: {worst:.2f} s).

How: `report misses` reads `miss_fact`, one row per missed order written by the facts' refresh
(the orders named by audit events since the last one), grouped by its cause; `return_rate` reads
two counters of `order_fact` (units shipped, units returned) and its top reasons group the return
lines of the selection's orders.
"""
    record_section("misses.py", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="write the figures to docs/performance.md")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = []
    for backend in backends:
        r = bench(backend, args.orders, args.runs)
        print(describe(r), flush=True)
        results.append(r)
    if args.record:
        command = "python bench/misses.py " + " ".join(a for a in sys.argv[1:] if a != "--record")
        record(results, command.strip())


if __name__ == "__main__":
    main()
