"""Benchmark `ffctl import shipments` against the same store's `ffctl import orders` (SPEC 9.2).

    python bench/ship.py                        # 200k shipment lines, SQLite and PostgreSQL
    python bench/ship.py --lines 20000 --backend sqlite
    python bench/ship.py --record               # also write the figures to docs/performance.md

Each backend, in a fresh store: masters and plenty of stock; `ffctl import orders` of LINES order
lines (two lines an order; timed: the reference); `ffctl allocate --all`; `ffctl import shipments`
of one shipment per order but the last, its two lines as rows (LINES - 2 shipment lines; timed);
then a single `ffctl ship` of the last order (wall time, process start included). Goal: the
shipments import takes no longer than the orders import (ratio <= 1.0). ``--floor``: also the
floor, the rows the shipments import inserted, updated and deleted written again by the database
alone (SQL only, no Python) into a copy of the store as it was before the import. PostgreSQL:
FFCTL_BENCH_PG (default postgresql://root@127.0.0.1:5432/test) names a server where the
benchmark may create and drop its own database.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
SERVER_CPU: dict[tuple, float] = {}  # (args) -> CPU seconds of the PostgreSQL backends serving it


class ServerCpu:
    """CPU seconds of the PostgreSQL backends connected to one database while a process runs:
    their /proc counters sampled every ``every`` seconds (the server is on this machine), the last
    reading of each kept; a backend's work after its last sample is missed (at most ``every`` s)."""

    def __init__(self, db_url: str, every: float = 0.1) -> None:
        import threading

        import psycopg

        self.conn = psycopg.connect(PG_ADMIN, autocommit=True)
        self.name, self.every, self.seen = _pg_name(db_url), every, {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while True:
            pids = self.conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (self.name,)
            ).fetchall()
            for (pid,) in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:  # ended since
                    continue
                self.seen[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            if self.done.wait(self.every):
                return

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        self.conn.close()
        return sum(self.seen.values())


def ffctl(folder: Path, db_url: str, *args: str, now: str = NOW) -> float:
    """Run one ffctl process; returns its wall time (its CPU time goes to ``CPU``: on a loaded
    machine the wall time also counts waiting for a core, the CPU time only the work done)."""
    env = dict(os.environ, FFCTL_CONFIG=str(folder / "ffctl.toml"), FFCTL_DB=db_url, FFCTL_NOW=now, FFCTL_USER="frank")
    server = ServerCpu(db_url) if db_url.startswith("postgresql") else None
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(
            [sys.executable, "-m", "ffctl", *args], env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=err
        )
        _pid, status, usage = os.wait4(p.pid, 0)
        if server is not None:
            SERVER_CPU[args[:2]] = server.stop()
        p.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        if p.returncode != 0:
            err.seek(0)
            raise SystemExit(
                f"ffctl {' '.join(args)} failed ({p.returncode}):\n{err.read().decode(errors='replace')[-3000:]}"
            )
    CPU[args[:2]] = usage.ru_utime + usage.ru_stime
    return seconds


def run(folder: Path, db_url: str, orders: int, floor: bool = False) -> dict:
    ffctl(folder, db_url, "db", "upgrade")
    for kind in ("products", "customers", "stock"):
        ffctl(folder, db_url, "import", kind, str(folder / f"{kind}.csv"))
    sqlite = db_url.startswith("sqlite")

    def before() -> None:  # a copy of the store as the next import finds it
        if sqlite:
            for tail in ("", "-wal"):  # ffctl's processes have ended: the WAL is checkpointed, if any left
                if Path(db_url.split("///", 1)[1] + tail).exists():
                    shutil.copy(db_url.split("///", 1)[1] + tail, str(folder / "floor.db") + tail)
        else:
            _pg_admin(f"CREATE DATABASE {_pg_name(db_url)}_floor TEMPLATE {_pg_name(db_url)}")

    def after() -> dict:  # the database alone writing into that copy what the import wrote
        return sqlite_floor(folder / "floor.db", Path(db_url.split("///", 1)[1])) if sqlite else pg_floor(db_url)

    if floor:
        before()
    t_orders = ffctl(folder, db_url, "import", "orders", str(folder / "orders.csv"))
    floor_orders = after() if floor else None
    ffctl(folder, db_url, "allocate", "--all", now="2026-11-23T09:30:00+08:00")
    if floor:
        before()
    t_ship = ffctl(
        folder, db_url, "import", "shipments", str(folder / "shipments.csv"), now="2026-11-23T13:00:00+08:00"
    )
    spent = after() if floor else None
    t_one = ffctl(folder, db_url, "ship", f"SO{orders - 1:07d}", "--carrier", "SF", now="2026-11-23T14:00:00+08:00")
    return {
        "orders": t_orders,
        "shipments": t_ship,
        "one": t_one,
        "cpu_orders": CPU[("import", "orders")],
        "cpu_shipments": CPU[("import", "shipments")],
        "cpu_one": CPU[("ship", f"SO{orders - 1:07d}")],
        "server_orders": SERVER_CPU.get(("import", "orders")),
        "server_shipments": SERVER_CPU.get(("import", "shipments")),
        "floor": spent,
        "floor_orders": floor_orders,
    }


def _pg_name(db_url: str) -> str:
    return db_url.rsplit("/", 1)[1]


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)


def _changes(db, tables, cols, key, quote, ne: str, before: str = "") -> dict[str, tuple]:
    """Untimed: per table the rows the import inserted (``n_T``), the changed ones (``u_T``, with the
    columns that changed) and the keys of those it deleted (``g_T``), from ``s_T`` (the table after
    the import) against ``T`` (before; read as ``{before}T``), as temp tables."""
    out = {}
    for t in tables:
        k, c = key[t], cols[t]
        all_cols = ", ".join(quote(x) for x in c)
        o = f"{before}{t}"
        db.execute(f"CREATE TEMP TABLE d_{t} AS SELECT {all_cols} FROM s_{t} EXCEPT SELECT {all_cols} FROM {o}")
        db.execute(f"CREATE TEMP TABLE g_{t} AS SELECT {k} FROM {o} EXCEPT SELECT {k} FROM s_{t}")
        # NOT EXISTS, not NOT IN: PostgreSQL runs a NOT IN over a large subquery row by row
        there = f"EXISTS (SELECT 1 FROM {o} o WHERE o.{k} = d.{k})"
        db.execute(f"CREATE TEMP TABLE n_{t} AS SELECT * FROM d_{t} d WHERE NOT {there}")
        db.execute(f"CREATE TEMP TABLE u_{t} AS SELECT * FROM d_{t} d WHERE {there}")
        changed = []
        for x in c:
            if x == k:
                continue
            q = quote(x)
            n = db.execute(
                f"SELECT count(*) FROM u_{t} u JOIN {o} o ON o.{k} = u.{k} WHERE u.{q} {ne} o.{q}"
            ).fetchone()[0]
            if n:
                changed.append(x)
        counts = [db.execute(f"SELECT count(*) FROM {p}_{t}").fetchone()[0] for p in ("n", "u", "g")]
        if any(counts):
            out[t] = (*counts, changed)
    return out


def _apply(db, changes: dict[str, tuple], cols, key, quote, rowid: str | None = None) -> dict:
    """Timed by the caller: the import's writes, table by table: deletes, updates, inserts.
    ``rowid``: the tables' own name of the key column read as ``key`` (SQLite's rowid)."""
    spent = {}
    for t, (_n, u, g, changed) in changes.items():
        started = time.perf_counter()
        k = key[t]
        own = rowid or k
        if g:
            db.execute(f"DELETE FROM {t} WHERE {own} IN (SELECT {k} FROM g_{t})")
        if u and changed:
            sets = ", ".join(f"{quote(x)} = u.{quote(x)}" for x in changed)
            db.execute(f"UPDATE {t} SET {sets} FROM u_{t} u WHERE {t}.{own} = u.{k}")
        all_cols = ", ".join(quote(x) for x in cols[t])
        into = ", ".join(own if x == k else quote(x) for x in cols[t])
        db.execute(f"INSERT INTO {t} ({into}) SELECT {all_cols} FROM n_{t}")
        spent[t] = time.perf_counter() - started
    return spent


def sqlite_floor(floor_db: Path, filled: Path) -> dict:
    """SQLite alone writing what the import wrote into ``floor_db`` (the store before it), in one
    transaction, with the store's indexes, checks, triggers and foreign keys (on, as ffctl has them).
    Returns {"tables": {table: (inserted, updated, deleted, seconds)}, "wall", "cpu"}."""
    import sqlite3

    db = sqlite3.connect(floor_db, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON", "cache_size = -32768"):
        db.execute(f"PRAGMA {pragma}")
    db.execute("ATTACH ? AS src", (str(filled),))
    tables = [
        r[0]
        for r in db.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' "
            "AND name != 'alembic_version'"
        )
    ]
    cols = {t: [r[1] for r in db.execute(f"PRAGMA main.table_info({t})")] for t in tables}
    key = {t: "_rid" for t in tables}
    for t in tables:
        db.execute(f"CREATE TEMP VIEW s_{t} AS SELECT rowid AS _rid, * FROM src.{t}")
        db.execute(f"CREATE TEMP VIEW o_{t} AS SELECT rowid AS _rid, * FROM main.{t}")
        cols[t] = ["_rid", *cols[t]]
    changes = _changes(db, tables, cols, key, lambda x: f'"{x}"', "IS NOT", before="o_")
    db.execute("BEGIN")
    cpu, started = time.process_time(), time.perf_counter()
    spent = _apply(db, changes, cols, key, lambda x: f'"{x}"', rowid="rowid")
    db.execute("COMMIT")
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    db.close()
    return {"tables": {t: (*changes[t][:3], spent[t]) for t in changes}, "wall": wall, "cpu": cpu}


def _backend_cpu(conn) -> float:
    """The server process of ``conn``: its CPU seconds so far (user + system, from /proc)."""
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pg_floor(db_url: str) -> dict:
    """PostgreSQL alone writing what the import wrote into ``<db>_floor`` (a copy of the store
    before it, foreign keys and triggers as in the store), in one transaction; the tables after the
    import are copied in first (untimed). Server CPU from /proc when the server is on this machine."""
    import psycopg

    base = PG_ADMIN.rsplit("/", 1)[0]
    name = _pg_name(db_url)
    try:
        with psycopg.connect(f"{base}/{name}") as src, psycopg.connect(f"{base}/{name}_floor") as db:
            tables = [
                r[0]
                for r in db.execute(  # in creation order: a table after those its foreign keys name
                    "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace "
                    "AND relname != 'alembic_version' ORDER BY oid"
                )
            ]
            cols, key = {}, {}
            for t in tables:
                cols[t] = [
                    r[0]
                    for r in db.execute(
                        "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                        "AND table_schema = 'public' ORDER BY ordinal_position",
                        (t,),
                    )
                ]
                pk = db.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                    "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
                    (t,),
                ).fetchall()
                key[t] = pk[0][0] if len(pk) == 1 else "ctid"
            tables = [t for t in tables if key[t] != "ctid"]
            for t in tables:
                db.execute(f"CREATE TEMP TABLE s_{t} (LIKE {t})")
                with (
                    src.cursor().copy(f"COPY {t} TO STDOUT") as out,
                    db.cursor().copy(f"COPY s_{t} FROM STDIN") as into,
                ):
                    for chunk in out:
                        into.write(chunk)
            changes = _changes(db, tables, cols, key, lambda x: f'"{x}"', "IS DISTINCT FROM")
            db.commit()
            cpu, started = _backend_cpu(db), time.perf_counter()
            spent = _apply(db, changes, cols, key, lambda x: f'"{x}"')
            db.commit()
            wall, cpu = time.perf_counter() - started, _backend_cpu(db) - cpu
    finally:
        _pg_admin(f"DROP DATABASE IF EXISTS {name}_floor WITH (FORCE)")
    return {"tables": {t: (*changes[t][:3], spent[t]) for t in changes}, "wall": wall, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--floor", action="store_true", help="also time the database alone writing the import's rows")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="ffctl-bench-ship-") as tmp:
        folder = Path(tmp)
        orders = generate(folder, args.lines)
        if args.backend in ("sqlite", "both"):
            results.append(("SQLite", run(folder, f"sqlite:///{folder / 'bench.db'}", orders, args.floor)))
            print(results[-1], flush=True)  # a later failure keeps this one's figures
        if args.backend in ("postgresql", "both"):
            import psycopg

            name = f"ffctl_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            try:
                base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
                results.append(("PostgreSQL", run(folder, f"{base}/{name}", orders, args.floor)))
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
        if r["server_orders"]:
            ship_all, orders_all = (
                r["cpu_shipments"] + r["server_shipments"],
                r["cpu_orders"] + r["server_orders"],
            )
            lines.append(
                f"  server backends' CPU (sampled from /proc): {r['server_shipments']:.1f} s vs "
                f"{r['server_orders']:.1f} s; client + server: {ship_all:.1f} s vs {orders_all:.1f} s: "
                f"ratio {ship_all / orders_all:.2f}"
            )
        if r["floor"]:
            f, o = r["floor"], r["floor_orders"]
            cpu_of = "CPU" if backend == "SQLite" else "server CPU"
            lines.append(
                f"  floor (the database alone writing the import's rows): shipments {f['wall']:.1f} s ({cpu_of} "
                f"{f['cpu']:.1f} s) vs import orders {r['orders']:.1f} s (CPU {r['cpu_orders']:.1f} s): ratio "
                f"{f['wall'] / r['orders']:.2f}; the orders' own floor {o['wall']:.1f} s ({cpu_of} {o['cpu']:.1f} s)"
            )
            for what, x in (("shipments", f), ("orders", o)):
                lines.append(
                    f"    {what} (table +inserted/~updated/-deleted): "
                    + "; ".join(
                        f"{t} +{n:,}/~{u:,}/-{g:,} {sec:.2f} s"
                        for t, (n, u, g, sec) in sorted(x["tables"].items(), key=lambda kv: -kv[1][3])
                    )
                )
    text = "\n".join(lines)
    print(text)
    if args.record:
        record_section("ship.py", text)


if __name__ == "__main__":
    main()
