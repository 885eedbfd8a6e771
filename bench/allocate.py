"""Benchmark `ffctl allocate --all` against `ffctl import orders` of the same orders.

    python bench/allocate.py                          # 100k orders (~250k lines), SQLite and PostgreSQL
    python bench/allocate.py --orders 20000 --backend sqlite
    python bench/allocate.py --record                 # also write the figures to docs/performance.md

For each backend, in a fresh store: import suppliers, products, customers, stock (3 warehouses,
sized so most but not all demand can be met) and receipts; then time, as real subprocesses,
`ffctl import orders FILE` (the reference) and, after moving every order to the allocation
node with a few set-based statements (not timed), `ffctl allocate --all --format csv`.
Goal: allocate time / import time <= 1.0. The store is then checked: nothing oversold and
every reservation adds up. PostgreSQL: FFCTL_BENCH_PG (default
postgresql://root@127.0.0.1:5432/test) names a server where the benchmark may create and drop
its own database.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _perfdoc import record_section  # bench/_perfdoc.py (bench/ is on sys.path when run)

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("FFCTL_BENCH_PG", "postgresql://root@127.0.0.1:5432/test")
SECTION = "## Allocation (bench/allocate.py)"
WAREHOUSES = ["SH", "GZ", "BJ"]
NOW = "2026-06-01T10:00:00+08:00"


def generate(folder: Path, orders: int, *, skus: int = 2000, customers: int = 5000, seed: int = 11) -> dict:
    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "suppliers.csv").write_text("supplier,name\nSUP1,Supplier one\n", encoding="utf-8")
    with open(folder / "products.csv", "w", encoding="utf-8") as f:
        f.write("sku,name,category,safety_stock,supplier,lead_time_days\n")
        for i in range(skus):
            f.write(f"SKU{i:05d},Product {i},cat{i % 7},{rnd.randint(0, 30)},SUP1,{rnd.randint(2, 20)}\n")
    with open(folder / "customers.csv", "w", encoding="utf-8") as f:
        f.write("customer,name,tier,region\n")
        for i in range(customers):
            f.write(f"C{i:05d},Customer {i},{rnd.choice(['gold', 'silver'])},{rnd.choice(['north', 'south'])}\n")
    demand = [0] * skus
    lines = 0
    start = datetime(2026, 5, 1, 8, 0)
    with open(folder / "orders.csv", "w", encoding="utf-8") as f:
        f.write("order_id,line_no,customer,sku,qty,channel,created_at,priority,promised_ship_date\n")
        for o in range(orders):
            created = (start + timedelta(seconds=o * 20)).strftime("%Y-%m-%d %H:%M:%S")
            promised = (start + timedelta(days=rnd.randint(5, 40))).strftime("%Y-%m-%d") if rnd.random() < 0.5 else ""
            prio, cust = rnd.choice([0, 0, 0, 1, 2]), f"C{rnd.randrange(customers):05d}"
            channel = rnd.choice(["tmall", "jd", "b2b"])
            for n, sku in enumerate(rnd.sample(range(skus), rnd.randint(1, 4)), start=1):
                qty = rnd.randint(1, 10)
                demand[sku] += qty
                f.write(f"SO{o:07d},{n},{cust},SKU{sku:05d},{qty},{channel},{created},{prio},{promised}\n")
                lines += 1
    with open(folder / "stock.csv", "w", encoding="utf-8") as f:
        f.write("sku,warehouse,on_hand\n")
        for i in range(skus):
            total = int(demand[i] * rnd.uniform(0.5, 1.1))
            split = sorted(rnd.randint(0, total) for _ in range(2))
            for wh, n in zip(WAREHOUSES, (split[0], split[1] - split[0], total - split[1])):
                f.write(f"SKU{i:05d},{wh},{n}\n")
    with open(folder / "receipts.csv", "w", encoding="utf-8") as f:
        f.write("receipt_id,sku,warehouse,qty,expected_at\n")
        for i in range(skus // 2):
            f.write(
                f"PO{i:05d},SKU{rnd.randrange(skus):05d},{rnd.choice(WAREHOUSES)},{rnd.randint(10, 200)},"
                f"2026-06-{rnd.randint(2, 28):02d}\n"
            )
    return {"orders": orders, "lines": lines}


def timed(cmd: list[str], env: dict, stdout=subprocess.DEVNULL) -> tuple[float, int]:
    """(seconds, peak RSS in MB) of one subprocess."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err}")
    return seconds, usage.ru_maxrss // 1024


def ffctl(folder: Path, db_url: str, *args: str, stdout=subprocess.DEVNULL) -> tuple[float, int]:
    env = {
        **os.environ,
        "FFCTL_CONFIG": str(folder / "ffctl.toml"),
        "FFCTL_DB": db_url,
        "FFCTL_USER": "bench",
        "FFCTL_NOW": NOW,
    }
    return timed([sys.executable, "-m", "ffctl", *args], env, stdout)


def to_allocation(db_url: str, config: Path) -> int:
    """Complete every open first-node task and open an allocation task instead (set-based, untimed)."""
    import sqlalchemy as sa

    sys.path.insert(0, str(REPO))
    from ffctl.core.clock import parse_time
    from ffctl.core.config import load_config
    from ffctl.core.models import Order, Task, UTCDateTime
    from ffctl.core.store import Store

    cfg = load_config(config)
    at = parse_time(NOW, "UTC")
    spec = cfg.nodes["allocation"]
    T, Ot = Task.__table__, Order.__table__
    seq = sa.case(
        {wf.name: wf.nodes.index("allocation") for wf in cfg.workflows if "allocation" in wf.nodes},
        value=Ot.c.workflow,
        else_=0,
    )

    def ts(value):
        return sa.literal(value, UTCDateTime())

    store = Store(db_url)
    with store.session(write=True) as s:
        s.execute(
            sa.update(T)
            .where(T.c.status == "open")
            .values(status="done", outcome="completed", completed_at=at, completed_by="bench", next_action_at=None)
        )
        cols = [
            "order_id",
            "workflow",
            "node",
            "seq",
            "status",
            "entered_at",
            "sla_seconds",
            "risk_at",
            "deadline",
            "sla_state",
            "paused_seconds",
            "next_step",
            "escalation_level",
            "next_action_at",
        ]
        risk = at + timedelta(seconds=spec.sla_seconds * spec.warn_at)
        sel = sa.select(
            Ot.c.order_id,
            Ot.c.workflow,
            sa.literal("allocation"),
            seq,
            sa.literal("open"),
            ts(at),
            sa.literal(spec.sla_seconds),
            ts(risk),
            ts(at + timedelta(seconds=spec.sla_seconds)),
            sa.literal("on_track"),
            sa.literal(0.0),
            sa.literal(0),
            sa.literal(0),
            ts(risk),
        ).where(Ot.c.status == "open", Ot.c.workflow.is_not(None))
        s.execute(sa.insert(T).from_select(cols, sel))
        moved = s.execute(
            sa.update(Ot).where(Ot.c.status == "open", Ot.c.workflow.is_not(None)).values(node="allocation")
        ).rowcount
    store.dispose()
    return moved


def check(db_url: str) -> dict:
    import sqlalchemy as sa

    from ffctl.core.store import Store

    store = Store(db_url)
    with store.session() as s:
        q = lambda sql: s.execute(sa.text(sql)).scalar()  # noqa: E731
        out = {
            "oversold": q("SELECT count(*) FROM stock WHERE allocated > on_hand"),
            "stock_mismatch": q(
                "SELECT count(*) FROM stock st LEFT JOIN (SELECT sku, warehouse, SUM(qty) AS q "
                "FROM allocation GROUP BY sku, warehouse) a ON a.sku = st.sku "
                "AND a.warehouse = st.warehouse WHERE st.allocated <> COALESCE(a.q, 0)"
            ),
            "line_mismatch": q(
                "SELECT count(*) FROM order_line l WHERE allocated <> COALESCE((SELECT SUM(qty) "
                "FROM allocation a WHERE a.line_id = l.id), 0)"
            ),
            "completed": q("SELECT count(*) FROM orders WHERE node <> 'allocation'"),
            "waiting": q("SELECT count(*) FROM orders WHERE node = 'allocation'"),
            "allocations": q("SELECT count(*) FROM allocation"),
        }
    store.dispose()
    return out


def run_backend(folder: Path, url: str, name: str) -> dict:
    ffctl(folder, url, "db", "upgrade")
    for kind in ("suppliers", "products", "customers", "stock", "receipts"):
        ffctl(folder, url, "import", kind, str(folder / f"{kind}.csv"))
    imported, import_rss = ffctl(folder, url, "import", "orders", str(folder / "orders.csv"))
    moved = to_allocation(url, folder / "ffctl.toml")
    with open(folder / f"plan-{name}.csv", "w") as out:
        allocated, rss = ffctl(folder, url, "allocate", "--all", "--format", "csv", stdout=out)
    again, _ = ffctl(folder, url, "allocate", "--all", "--format", "csv")  # top-up run: nothing new
    return {
        "backend": name,
        "import": imported,
        "allocate": allocated,
        "rss": rss,
        "import_rss": import_rss,
        "moved": moved,
        "again": again,
        **check(url),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--dir", help="work folder (kept); default a temp folder, removed after")
    parser.add_argument("--record", action="store_true", help="write the figures to docs/performance.md")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))

    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ffctl-bench-allocate-"))
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        shutil.copy(REPO / "config.example.toml", folder / "ffctl.toml")
        info = generate(folder, args.orders)
        print(f"generated {info['orders']:,} orders, {info['lines']:,} lines")
        if args.backend in ("sqlite", "both"):
            results.append(run_backend(folder, f"sqlite:///{folder / 'bench.db'}", "SQLite"))
            print(results[-1])
        if args.backend in ("postgresql", "both"):
            try:
                import psycopg

                with psycopg.connect(PG_ADMIN, connect_timeout=3):
                    pass
            except Exception as exc:  # noqa: BLE001
                print(f"PostgreSQL skipped: {str(exc).splitlines()[0]}")
            else:
                dbname = f"ffctl_bench_alloc_{uuid.uuid4().hex[:8]}"
                base = PG_ADMIN.rsplit("/", 1)[0]
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {dbname}")
                try:
                    url = f"postgresql+psycopg://{base.split('://', 1)[1]}/{dbname}"
                    results.append(run_backend(folder, url, "PostgreSQL"))
                    print(results[-1])
                finally:
                    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                        conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)

    rows = []
    for r in results:
        ratio = r["allocate"] / r["import"]
        ok = r["oversold"] == 0 and r["stock_mismatch"] == 0 and r["line_mismatch"] == 0
        rows.append(
            f"| {r['backend']} | {r['import']:.1f} s | {r['allocate']:.1f} s | "
            f"{ratio:.2f} {'(goal <= 1.0: met)' if ratio <= 1.0 else '(goal <= 1.0: NOT met)'} | "
            f"{r['completed']:,} / {r['waiting']:,} | {r['allocations']:,} | {r['rss']} MB | {r['again']:.1f} s | "
            f"{'yes' if ok else 'NO'} |"
        )
    table = [
        f"{info['orders']:,} orders, {info['lines']:,} lines, 2,000 SKUs in 3 warehouses, stock covering "
        f"50-110% of each SKU's demand (`python bench/allocate.py --orders {args.orders}`, "
        f"{os.cpu_count()} cores, {datetime.now(timezone.utc):%Y-%m-%d}):",
        "",
        "| store | import orders | allocate --all | ratio | fully allocated / waiting | reservations "
        "| allocate peak RSS | second run | invariants hold |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    print("\n".join(table))
    if args.record:
        record(table)


NOTES = [
    "Both timings are whole `ffctl` subprocesses (start-up included) run one after the other on the same",
    "machine. Allocation is set-based: one query for the candidate orders, one for their SKUs' stock",
    "(locked in id order on PostgreSQL, all or nothing), then steps of 20,000 orders (the first ones",
    "smaller): a read of the step's open tasks (PostgreSQL: of its orders and then their tasks, locked",
    "with SKIP LOCKED; SQLite's write transaction is exclusive and read the candidates itself, so it",
    "reads only the tasks, by the driver), one read of their lines, planning in memory, and bulk writes:",
    "`UPDATE ... FROM unnest(...)` for the lines, reservations and events by COPY (PostgreSQL) / driver",
    "executemany (SQLite), and the fully allocated orders' workflow moves through the tasks read with",
    "the step (`workflow.PlannedMoves`: close by id, next tasks by COPY, one order update); stock",
    "written once per run. On PostgreSQL a second thread writes each step, and reads and locks the one",
    "after, while Python plans the next (rows formatted as COPY text by the planner), so the server",
    "works on one core while Python plans on the other. On SQLite the same overlap loses: the driver",
    "takes the GIL back for every row of an executemany, so the writing thread crawls while the",
    "planner runs (measured: slower than one thread). SQLite runs with a page cache of up to 512 MiB",
    "(the import: 32 MiB, within its 200 MB bound), since its one transaction keeps every page it",
    "changes: with the default 2 MiB the run took 16 s before the other savings, and at 1M orders",
    "64 MiB took 150 s against 123 s. Schema 0004 (docs/operations.md) took index writes off this path:",
    "closing a task no longer rewrites three index entries, events leave out the subject and kind",
    "indexes, reservations have no SKU index or second foreign key, and PostgreSQL stores",
    "`order_line` with fillfactor 50 so that nearly every line update is HOT. Before it, and before",
    "the driver reads: SQLite 15.5 s vs a 12.5 s import (1.24x), PostgreSQL 19.7 s vs 17.8 s (1.11x).",
    "`import orders` analyzes the tables it grew; for stores loaded another way `allocate --all`",
    "analyzes stale tables first, without which the key lookups became scans (PostgreSQL: 592 s). The",
    "second run is the top-up pass cron makes: it reads the waiting orders and finds nothing new.",
    "The figures above are from a slower machine than the earlier ones (about half the speed, the",
    "reference included), and the import, the reference here, got faster in the same session. SQLite's",
    "ratio over ten runs that day, across the session's changes to the bulk writes (alternated A/B",
    "runs showed they do not slow allocation): 0.79, 0.80, 0.87, 0.87, 0.88, 0.89, 0.90, 0.91, 0.96",
    "and once 1.03. PostgreSQL's over six, its allocation code unchanged: 0.76, 0.86, 0.87, 0.90, 0.91",
    "and once 1.00. The goal holds in the median, with less margin than on the quieter machine.",
    "Where PostgreSQL's server time goes (an earlier run; py-spy of the writing thread, about 9 s):",
    "reservations by COPY ~1.7 s (a foreign-key check and three index entries each), task inserts",
    "~1.3 s, events ~1.2 s, order moves ~1.1 s, line updates ~0.9 s (2.1 s at fillfactor 70), task",
    "closes ~0.8 s, step and stock reads ~1.3 s.",
    "At ten times the size (`--orders 1000000 --backend sqlite`, 2.5M lines, one run): import 122.9 s,",
    "allocate 131.1 s, 1.07x, peak RSS 1,071 MB. The goal's size is 100k; at 1M each step's writes land",
    "all over tables bigger than the cache (with 64 MiB, closing a task took ~27 us there, ~11 us at 100k).",
]


def record(table: list[str]) -> None:
    body = "\n".join([SECTION, "", *table, "", *NOTES])
    print(f"recorded in {record_section('allocate.py', body)}")


if __name__ == "__main__":
    main()
