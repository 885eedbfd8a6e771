"""Interactive latency: single-order commands as whole processes on a 100k-order SQLite store,
each against `sqlite-utils query` running a comparable read on the same store (a peer Python
CLI paying its own start-up), measured in the same run.

    python bench/latency.py                    # build a 100k-order store (bench/report.py's), time, drop it
    python bench/latency.py --store sqlite:////tmp/x.db --runs 7
    python bench/latency.py --phases           # also where an `order show` process spends its time

Times: `order show`, `task list --mine`, `advance`, `ship` (an order at dispatch) and `sla
status`, median of the runs; the reference is `sqlite-utils query` of the order's row with its
tasks. Goal: each <= 1.5x the reference. The writes (advance, ship) use a different open order
each run, advanced to where the command applies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import report as built  # bench/report.py: the store's builder (bench/ is on sys.path when run)

BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]  # bench/calendar.py shadows the stdlib's
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
CONFIG = REPO / "config.example.toml"
NOW = built.NOW + timedelta(days=3)


def run(cmd: list[str], env: dict, check: bool = True) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, capture_output=True, check=check)
    return time.perf_counter() - start


def phases(url: str, order_id: str, env: dict) -> dict[str, float]:
    """Where an `order show` process spends its time: interpreter, imports, config, engine and
    schema check, the command itself (each step timed inside one fresh process)."""
    code = f"""
import time, json
t0 = time.perf_counter()
import ffctl.cli
t1 = time.perf_counter()
from ffctl.core.config import load_config
cfg = load_config({str(CONFIG)!r})
t2 = time.perf_counter()
from ffctl.core.store import Store
store = Store({url!r}); store.check_schema()
t3 = time.perf_counter()
from ffctl.core import orders
with store.session() as s:
    from datetime import datetime, timezone
    orders.show_order(s, cfg, {order_id!r}, datetime.now(timezone.utc))
t4 = time.perf_counter()
print(json.dumps({{"imports": t1 - t0, "config": t2 - t1, "engine + schema check": t3 - t2, "query": t4 - t3}}))
"""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True, text=True).stdout
    total = time.perf_counter() - start
    import json

    got = json.loads(out.strip().splitlines()[-1])
    got["interpreter"] = total - sum(got.values())
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--store", help="a kept store from an earlier run (sqlite URL)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--phases", action="store_true")
    args = parser.parse_args()
    from ffctl.core.store import Store

    tmp = None
    url = args.store
    if url is None:
        tmp = Path(tempfile.mkdtemp(prefix="ffctl-bench-latency-"))
        url = f"sqlite:///{tmp / 'bench.db'}"
        store = Store(url)
        store.upgrade()
        with store.engine.begin() as conn:
            built.build(conn, args.orders, built.Dialect(True))
        store.dispose()
    path = url.split("sqlite:///", 1)[1]
    bindir = Path(sys.executable).parent
    ffctl = shutil.which("ffctl", path=str(bindir)) or shutil.which("ffctl")
    ref = shutil.which("sqlite-utils", path=str(bindir)) or shutil.which("sqlite-utils")
    env = dict(os.environ, FFCTL_CONFIG=str(CONFIG), FFCTL_DB=url, FFCTL_NOW=NOW.isoformat(), FFCTL_USER="frank")
    store = Store(url)
    with store.engine.connect() as conn:  # orders waiting at wave_pick (the last 1%)
        open_ids = [r[0] for r in conn.exec_driver_sql(
            "SELECT order_id FROM task WHERE status = 'open' AND node = 'wave_pick' ORDER BY order_id DESC "
            f"LIMIT {4 * args.runs + 4}")]
        shown = conn.exec_driver_sql("SELECT order_id FROM orders WHERE status = 'delivered' "
                                     "ORDER BY order_id LIMIT 1 OFFSET 5000").scalar()
    store.dispose()
    reference = [ref, "query", path, "SELECT o.*, t.node, t.status, t.deadline FROM orders o JOIN task t "
                 "ON t.order_id = o.order_id WHERE o.order_id = :o", "-p", "o", shown]
    results: dict[str, list[float]] = {k: [] for k in ("reference", "order show", "task list --mine", "advance", "ship",
                                                       "sla status")}
    run(reference, env)
    run([ffctl, "order", "show", shown], env)  # warm the file cache for both alike
    for i in range(args.runs):
        results["reference"].append(run(reference, env))
        results["order show"].append(run([ffctl, "order", "show", shown, "--format", "json"], env))
        results["task list --mine"].append(run([ffctl, "task", "list", "--mine", "--format", "json"], env))
        a, b = open_ids[2 * i], open_ids[2 * i + 1]
        results["advance"].append(run([ffctl, "advance", a], env))
        # b: wave_pick -> pack_check -> dispatch, then the timed ship
        run([ffctl, "advance", b], env)
        run([ffctl, "advance", b], env)
        results["ship"].append(run([ffctl, "ship", b, "--carrier", "SF"], env, check=False))
        results["sla status"].append(run([ffctl, "sla", "status", "--format", "json"], env))
    med = {k: statistics.median(v) for k, v in results.items()}
    base = med["reference"]
    print(f"{args.orders:,}-order SQLite store; median of {args.runs}; load average {os.getloadavg()[0]:.1f}")
    print(f"  sqlite-utils query (reference)   {base * 1000:7.0f} ms")
    for k, v in med.items():
        if k != "reference":
            print(f"  ffctl {k:<26} {v * 1000:7.0f} ms   {v / base:5.2f}x (goal <= 1.5x)")
    if args.phases:
        got = [phases(url, shown, env) for _ in range(args.runs)]
        print("  where an `order show` process's time goes (median ms):")
        for k in got[0]:
            print(f"    {k:<24} {statistics.median(g[k] for g in got) * 1000:7.0f} ms")
    if tmp and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp:
        print(f"kept the store: {url}")


if __name__ == "__main__":
    main()
