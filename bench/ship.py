"""Benchmark `ffctl import shipments` against the same store's `ffctl import orders` (SPEC 9.2).

    python bench/ship.py                        # 200k shipment lines, SQLite and PostgreSQL
    python bench/ship.py --lines 20000 --backend sqlite
    python bench/ship.py --record               # also write the figures to docs/performance.md

Each backend, in a fresh store: masters and plenty of stock; `ffctl import orders` of LINES order
lines (two lines an order; timed: the reference); `ffctl allocate --all`; `ffctl import shipments`
of one shipment per order but the last, its two lines as rows (LINES - 2 shipment lines; timed);
then a single `ffctl ship` of the last order (wall time, process start included). Goal: the
shipments import takes no longer than the orders import (ratio <= 1.0). PostgreSQL:
FFCTL_BENCH_PG (default postgresql://root@127.0.0.1:5432/test) names a server where the
benchmark may create and drop its own database.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _perfdoc import record_section  # bench/_perfdoc.py (bench/ is on sys.path when run)

PG_ADMIN = os.environ.get("FFCTL_BENCH_PG", "postgresql://root@127.0.0.1:5432/test")
NOW = "2026-11-23T09:00:00+08:00"
CONFIG = """
[defaults]
timezone = "Asia/Shanghai"
[roles.warehouse]
members = ["frank"]
[workflows.main]
match = {}
nodes = ["allocation", "dispatch"]
[nodes.allocation]
sla = "10m"
auto = "allocate"
[nodes.dispatch]
owner = "warehouse"
sla = "48h"
auto = "ship"
"""
SKUS = 2000


def generate(folder: Path, lines: int) -> int:
    """Masters, stock, orders.csv (two lines an order) and shipments.csv; returns the orders."""
    orders = lines // 2
    (folder / "ffctl.toml").write_text(CONFIG, encoding="utf-8")
    with open(folder / "products.csv", "w", encoding="utf-8") as f:
        f.write("sku,name\n" + "".join(f"SKU{i:05d},产品{i:05d}\n" for i in range(SKUS)))
    (folder / "customers.csv").write_text("customer,name,region\nC1,客户一,华东\n", encoding="utf-8")
    with open(folder / "stock.csv", "w", encoding="utf-8") as f:
        f.write("sku,warehouse,on_hand\n" + "".join(f"SKU{i:05d},WH-SH,{lines * 5}\n" for i in range(SKUS)))
    with (
        open(folder / "orders.csv", "w", encoding="utf-8") as f,
        open(folder / "shipments.csv", "w", encoding="utf-8") as g,
    ):
        f.write("order_id,line_no,customer,sku,qty,created_at,promised_ship_date\n")
        g.write("order_id,shipped_at,carrier,tracking,line_no,sku,qty\n")
        for o in range(orders):
            for ln in (1, 2):
                sku, qty = f"SKU{(o * 7 + ln) % SKUS:05d}", 1 + (o + ln) % 4
                f.write(f"SO{o:07d},{ln},C1,{sku},{qty},2026-11-23 08:00,2026-11-25\n")
                if o < orders - 1:  # the last order is left for a single `ffctl ship`
                    g.write(f"SO{o:07d},2026-11-23 12:00,SF,SF{o:09d},{ln},{sku},{qty}\n")
    return orders


CPU: dict[tuple, float] = {}  # (args) -> CPU seconds (user + system) of the last such process


def ffctl(folder: Path, db_url: str, *args: str, now: str = NOW) -> float:
    """Run one ffctl process; returns its wall time (its CPU time goes to ``CPU``: on a loaded
    machine the wall time also counts waiting for a core, the CPU time only the work done)."""
    env = dict(os.environ, FFCTL_CONFIG=str(folder / "ffctl.toml"), FFCTL_DB=db_url, FFCTL_NOW=now, FFCTL_USER="frank")
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(
            [sys.executable, "-m", "ffctl", *args], env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=err
        )
        _pid, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        if p.returncode != 0:
            err.seek(0)
            raise SystemExit(
                f"ffctl {' '.join(args)} failed ({p.returncode}):\n{err.read().decode(errors='replace')[-3000:]}"
            )
    CPU[args[:2]] = usage.ru_utime + usage.ru_stime
    return seconds


def run(folder: Path, db_url: str, orders: int) -> dict:
    ffctl(folder, db_url, "db", "upgrade")
    for kind in ("products", "customers", "stock"):
        ffctl(folder, db_url, "import", kind, str(folder / f"{kind}.csv"))
    t_orders = ffctl(folder, db_url, "import", "orders", str(folder / "orders.csv"))
    ffctl(folder, db_url, "allocate", "--all", now="2026-11-23T09:30:00+08:00")
    t_ship = ffctl(
        folder, db_url, "import", "shipments", str(folder / "shipments.csv"), now="2026-11-23T13:00:00+08:00"
    )
    t_one = ffctl(folder, db_url, "ship", f"SO{orders - 1:07d}", "--carrier", "SF", now="2026-11-23T14:00:00+08:00")
    return {
        "orders": t_orders,
        "shipments": t_ship,
        "one": t_one,
        "cpu_orders": CPU[("import", "orders")],
        "cpu_shipments": CPU[("import", "shipments")],
        "cpu_one": CPU[("ship", f"SO{orders - 1:07d}")],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="ffctl-bench-ship-") as tmp:
        folder = Path(tmp)
        orders = generate(folder, args.lines)
        if args.backend in ("sqlite", "both"):
            results.append(("SQLite", run(folder, f"sqlite:///{folder / 'bench.db'}", orders)))
        if args.backend in ("postgresql", "both"):
            import psycopg

            name = f"ffctl_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            try:
                base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
                results.append(("PostgreSQL", run(folder, f"{base}/{name}", orders)))
            finally:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    load = os.getloadavg()
    lines = [
        "## Partial shipments (bench/ship.py)",
        "",
        "`python bench/ship.py --lines N`: each figure beside its reference from the same run and store.",
        "",
        f"{args.lines:,} order lines / {args.lines - 2:,} shipment lines; load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} (2 cores, shared)",
        "",
    ]
    for backend, r in results:
        lines.append(
            f"- {backend}: import shipments {r['shipments']:.1f} s vs import orders {r['orders']:.1f} s: "
            f"ratio {r['shipments'] / r['orders']:.2f} (goal <= 1.0); one `ffctl ship` {r['one']:.2f} s"
        )
        lines.append(
            f"  CPU time of the same processes: {r['cpu_shipments']:.1f} s vs {r['cpu_orders']:.1f} s: "
            f"ratio {r['cpu_shipments'] / r['cpu_orders']:.2f}; one `ffctl ship` {r['cpu_one']:.2f} s"
        )
    text = "\n".join(lines)
    print(text)
    if args.record:
        record_section("ship.py", text)


if __name__ == "__main__":
    main()
