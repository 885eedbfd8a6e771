"""Interactive latency: single-order commands as whole processes on a 100k-order SQLite store,
each against `sqlite-utils query` running a comparable read on the same store (a peer Python
CLI paying its own start-up), measured in the same run.

    python bench/latency.py                    # build a 100k-order store (bench/report.py's), time, drop it
    python bench/latency.py --store sqlite:////tmp/x.db --runs 7
    python bench/latency.py --phases           # also where an `order show` process spends its time

Times: `order show`, `task list --mine`, `advance`, `ship` (an order at dispatch) and `sla
status`, median of the runs; the reference is `sqlite-utils query` of the order's row with its
tasks. Goal: each <= 1.5x the reference. The writes (advance, ship) use a different open order
each run, advanced to where the command applies. ffctl's modules are byte-compiled first, as
an installed ffctl's are (and sqlite-utils' are).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import report as built  # bench/report.py: the store's builder (bench/ is on sys.path when run)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
CONFIG = REPO / "config.example.toml"
NOW = built.NOW + timedelta(days=3)


def run(cmd: list[str], env: dict, check: bool = True) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one whole process: on a loaded machine the CPU
    time is the figure a quiet machine's wall time approaches."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, env=env, capture_output=True, check=check)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def phases(url: str, order_id: str, env: dict) -> dict[str, float]:
    """Where an `order show` process spends its CPU time, each step timed inside one fresh process
    (CPU, not wall: the machine is shared); "the rest" is the process's CPU time outside the steps
    (interpreter start, Typer's parsing of the command line in a real run, exit)."""
    code = f"""
import time, json
T = time.process_time
got = {{}}
t = T()
def mark(name):
    global t
    now = T(); got[name] = now - t; t = now
import ffctl.cli
mark("import ffctl.cli (Typer)")
from ffctl.core.config import load_config
cfg = load_config({str(CONFIG)!r})
mark("config (import, parse or cache)")
import sqlalchemy, sqlalchemy.orm
mark("import SQLAlchemy")
import ffctl.core.models
mark("import SQLModel + models")
from ffctl.core.store import Store
store = Store({url!r}); store.check_schema()
mark("engine + schema check")
from ffctl.core import orders
mark("import the command's core")
from datetime import datetime, timezone
with store.session() as s:
    orders.show_order(s, cfg, {order_id!r}, datetime.now(timezone.utc))
mark("show_order (lazy imports + queries)")
with store.session() as s:
    orders.show_order(s, cfg, {order_id!r}, datetime.now(timezone.utc))
mark("show_order again (queries alone)")
print(json.dumps(got))
import gc
gc.freeze()  # as ffctl.cli.main does before exit
"""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    got = json.loads(out.strip().splitlines()[-1])
    got["the rest (interpreter, exit)"] = max(cpu - sum(v for k, v in got.items() if "again" not in k), 0.0)
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
    # ffctl's bytecode, as an installed ffctl has it (pip compiles a wheel's modules, as it did
    # sqlite-utils'): with PYTHONDONTWRITEBYTECODE set, each process would compile ffctl's sources (~50 ms)
    compileall.compile_dir(REPO / "ffctl", quiet=1)
    load_before = os.getloadavg()[0]
    path = url.split("sqlite:///", 1)[1]
    bindir = Path(sys.executable).parent
    ffctl = shutil.which("ffctl", path=str(bindir)) or shutil.which("ffctl")
    ref = shutil.which("sqlite-utils", path=str(bindir)) or shutil.which("sqlite-utils")
    env = dict(os.environ, FFCTL_CONFIG=str(CONFIG), FFCTL_DB=url, FFCTL_NOW=NOW.isoformat(), FFCTL_USER="frank")
    store = Store(url)
    with store.engine.connect() as conn:  # orders waiting at wave_pick (the last 1%)
        open_ids = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT order_id FROM task WHERE status = 'open' AND node = 'wave_pick' ORDER BY order_id DESC "
                f"LIMIT {4 * args.runs + 4}"
            )
        ]
        shown = conn.exec_driver_sql(
            "SELECT order_id FROM orders WHERE status = 'delivered' ORDER BY order_id LIMIT 1 OFFSET 5000"
        ).scalar()
    store.dispose()
    reference = [
        ref,
        "query",
        path,
        "SELECT o.*, t.node, t.status, t.deadline FROM orders o JOIN task t "
        "ON t.order_id = o.order_id WHERE o.order_id = :o",
        "-p",
        "o",
        shown,
    ]
    results: dict[str, list[tuple[float, float]]] = {
        k: [] for k in ("reference", "order show", "task list --mine", "advance", "ship", "sla status")
    }
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
    wall = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in results.items()}
    print(
        f"{args.orders:,}-order SQLite store; median of {args.runs}; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    print(f"  {'':<32} {'wall':>8} {'ratio':>6}   {'CPU':>7} {'ratio':>6}   (goal <= 1.5x)")
    print(
        f"  {'sqlite-utils query (reference)':<32} {wall['reference'] * 1000:6.0f} ms {'':>6}   "
        f"{cpu['reference'] * 1000:5.0f} ms"
    )
    for k in results:
        if k != "reference":
            print(
                f"  {'ffctl ' + k:<32} {wall[k] * 1000:6.0f} ms {wall[k] / wall['reference']:5.2f}x   "
                f"{cpu[k] * 1000:5.0f} ms {cpu[k] / cpu['reference']:5.2f}x"
            )
    if args.phases:
        got = [phases(url, shown, env) for _ in range(args.runs)]
        print("  where an `order show` process's CPU time goes (median ms):")
        for k in got[0]:
            print(f"    {k:<40} {statistics.median(g[k] for g in got) * 1000:7.0f} ms")
    if tmp and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp:
        print(f"kept the store: {url}")


if __name__ == "__main__":
    main()
