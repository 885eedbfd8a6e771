"""Benchmark `ffctl import orders` against the database's own CSV loaders.

    python bench/import.py                      # 1M order lines, SQLite and PostgreSQL
    python bench/import.py --lines 200000 --backend sqlite
    python bench/import.py --record             # also write the figures to docs/performance.md

Generates a realistic orders file (40% multi-line orders, 5,000 SKUs, 20,000 customers, Chinese
region names, ~85 bytes a line) with matching masters, then times, each in a fresh store:
- `ffctl import orders FILE` (a real subprocess: parse, validate, stage, write in batches,
  enter the workflow) against `sqlite3 DB ".mode csv" ".import FILE t"` of the same file;
- the same into PostgreSQL against `psql -c "\\copy t from FILE csv header"`;
and the import's peak RSS (os.wait4). Then each store's floor: the rows the import wrote inserted
by the database alone, no Python, without foreign keys (issue 25's reference: the import <= 2x it,
peak RSS <= 200 MB) and with them (what the import's own checks cost the server).
PostgreSQL: FFCTL_BENCH_PG (default postgresql://root@127.0.0.1:5432/test) names a server
where the benchmark may create and drop its own database.
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
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from _perfdoc import record_section  # bench/_perfdoc.py (bench/ is on sys.path when run)

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("FFCTL_BENCH_PG", "postgresql://root@127.0.0.1:5432/test")
REGIONS = ["华东", "华南", "华北", "华中", "西南", "西北", "东北"]
CHANNELS = ["tmall", "jd", "b2b", "wechat", "offline"]
CATEGORIES = ["electronics", "home", "tools", "apparel", "food", "custom"]
REPS = ["alice", "bob", "carol", "dave", "erin"]
SECTION = "## CSV import (bench/import.py)"


def generate(
    folder: Path, lines: int, *, skus: int = 5000, customers: int = 20000, missing_promise: float = 0.0, seed: int = 7
) -> dict:
    """products.csv, customers.csv, suppliers.csv and orders.csv of about ``lines`` order lines."""
    rnd = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "suppliers.csv", "w", encoding="utf-8", newline="") as f:
        f.write("supplier,name,inspection_exempt\n")
        for i in range(50):
            f.write(f"SUP{i:03d},供应商{i:03d},{'yes' if i % 5 == 0 else 'no'}\n")
    with open(folder / "products.csv", "w", encoding="utf-8", newline="") as f:
        f.write("sku,name,category,safety_stock,reorder_qty,supplier,lead_time_days,custom\n")
        for i in range(skus):
            cat = CATEGORIES[i % len(CATEGORIES)]
            f.write(
                f"SKU{i:05d},产品{i:05d},{cat},{rnd.randint(0, 50)},{rnd.randint(10, 200)},"
                f"SUP{i % 50:03d},{rnd.randint(1, 30)},{'yes' if cat == 'custom' else 'no'}\n"
            )
    with open(folder / "customers.csv", "w", encoding="utf-8", newline="") as f:
        f.write("customer,name,tier,region,credit_limit,sales_rep\n")
        for i in range(customers):
            f.write(
                f"C{i:06d},客户{i:06d}有限公司,{rnd.choice(['gold', 'silver', 'bronze'])},"
                f"{rnd.choice(REGIONS)},{rnd.randint(1, 100) * 1000},{rnd.choice(REPS)}\n"
            )
    start = datetime(2026, 3, 1, 8, 0, 0)
    written = orders = 0
    with open(folder / "orders.csv", "w", encoding="utf-8", newline="") as f:
        f.write("order_id,line_no,customer,sku,qty,channel,region,unit_price,created_at,promised_ship_date,priority\n")
        while written < lines:
            orders += 1
            n = 1 if rnd.random() >= 0.4 else rnd.randint(2, 5)
            n = min(n, lines - written)
            customer = f"C{rnd.randrange(customers):06d}"
            when = start + timedelta(seconds=orders * 7)
            created = when.strftime("%Y-%m-%d %H:%M:%S")
            promised = (
                ""
                if rnd.random() < missing_promise
                else (when + timedelta(days=rnd.randint(1, 5))).strftime("%Y/%m/%d")
            )
            channel, region = rnd.choice(CHANNELS), rnd.choice(REGIONS)
            prio = rnd.choice(["normal", "normal", "normal", "high", "low"])
            for line_no in range(1, n + 1):
                f.write(
                    f"SO{orders:09d},{line_no},{customer},SKU{rnd.randrange(skus):05d},{rnd.randint(1, 20)},"
                    f"{channel},{region},{rnd.randint(100, 99999) / 100:.2f},{created},{promised},{prio}\n"
                )
            written += n
    size = (folder / "orders.csv").stat().st_size
    return {"lines": written, "orders": orders, "bytes": size, "skus": skus, "customers": customers}


class Timed(NamedTuple):
    seconds: float
    rss: int  # peak RSS, MB
    cpu: float  # the process's user + system CPU seconds: on a shared machine wall time swings with
    # the neighbours' load, a process's own CPU time much less


def timed(cmd: list[str], env: dict | None = None) -> Timed:
    """How long one subprocess took, its peak memory and its CPU time."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err}")
    return Timed(seconds, usage.ru_maxrss // 1024, usage.ru_utime + usage.ru_stime)


def ffctl(folder: Path, db_url: str, *args: str) -> Timed:
    env = {**os.environ, "FFCTL_CONFIG": str(folder / "ffctl.toml"), "FFCTL_DB": db_url, "FFCTL_USER": "bench"}
    return timed([sys.executable, "-m", "ffctl", *args], env)


def prepare_store(folder: Path, db_url: str) -> dict[str, float]:
    """A fresh store with the masters imported; returns each master import's seconds."""
    ffctl(folder, db_url, "db", "upgrade")
    return {
        kind: ffctl(folder, db_url, "import", kind, str(folder / f"{kind}.csv"))[0]
        for kind in ("suppliers", "products", "customers")
    }


def bench_sqlite(folder: Path, data: Path) -> dict:
    ref_db = folder / "ref.db"
    ref = timed(["sqlite3", str(ref_db), ".mode csv", f".import {data} t"]).seconds
    db = folder / "ffctl.db"
    url = f"sqlite:///{db}"
    masters = prepare_store(folder, url)
    shutil.copy(db, folder / "floor.db")
    shutil.copy(db, folder / "floor_fk.db")
    ours, rss, cpu = ffctl(folder, url, "import", "orders", str(data))
    again, rss2, _ = ffctl(folder, url, "import", "orders", str(data))  # idempotent re-run: all unchanged
    return {
        "backend": "SQLite",
        "ours": ours,
        "cpu": cpu,
        "ref": ref,
        "ref_name": "sqlite3 .import",
        "rss": max(rss, rss2),
        "rerun": again,
        "floor": sqlite_floor(folder / "floor.db", db),
        "floor_fk": sqlite_floor(folder / "floor_fk.db", db, foreign_keys=True),
        "masters": masters,
    }


FLOOR_TABLES = ("orders", "order_line", "task", "event")


def sqlite_floor(empty: Path, filled: Path, *, foreign_keys: bool = False) -> dict[str, tuple[int, float]]:
    """SQLite alone inserting the rows the import wrote into ``empty`` (the same schema before the
    import), table by table in one transaction: ``INSERT ... SELECT`` from the filled store, so no
    Python touches a row. A lower bound of what any importer pays for those rows: the schema's
    indexes and checks are there, but foreign keys are off (the import runs with them on), and
    ``WHERE rowid > 0`` stops SQLite from copying the table's pages as they are (its transfer
    shortcut for ``INSERT INTO t SELECT * FROM u`` into an empty table). ``foreign_keys``: checked as
    the import has them checked. Returns table -> (rows, seconds), and "cpu" -> (0, this process's
    CPU seconds for all of it)."""
    import sqlite3

    db = sqlite3.connect(empty, isolation_level=None)
    fk = "ON" if foreign_keys else "OFF"
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", f"foreign_keys = {fk}", "cache_size = -32768"):
        db.execute(f"PRAGMA {pragma}")
    db.execute("ATTACH ? AS src", (str(filled),))
    spent = {}
    cpu = time.process_time()
    db.execute("BEGIN")
    started = time.perf_counter()
    for table in FLOOR_TABLES:
        cur = db.execute(f"INSERT INTO main.{table} SELECT * FROM src.{table} WHERE rowid > 0")
        spent[table] = (cur.rowcount, time.perf_counter() - started)
        started = time.perf_counter()
    db.execute("COMMIT")
    rows, seconds = spent["event"]
    spent["event"] = (rows, seconds + time.perf_counter() - started)  # the commit, with the last table
    spent["cpu"] = (0, time.process_time() - cpu)
    db.close()
    return spent


def _psql(conninfo: str, *args: str) -> None:
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", conninfo, *args], check=True, stdout=subprocess.DEVNULL)


def bench_postgresql(folder: Path, data: Path) -> dict | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            pass
    except Exception as exc:  # noqa: BLE001
        print(f"PostgreSQL skipped: {exc}".splitlines()[0])
        return None
    base = PG_ADMIN.rsplit("/", 1)[0]
    names = [f"ffctl_bench_{uuid.uuid4().hex[:8]}", f"ffctl_bench_ref_{uuid.uuid4().hex[:8]}"]
    for name in names:
        _psql(PG_ADMIN, "-c", f"CREATE DATABASE {name}")
    try:
        ref_conn = f"{base}/{names[1]}"
        header = data.open(encoding="utf-8").readline().strip().split(",")
        _psql(ref_conn, "-c", f"CREATE TABLE t ({', '.join(f'{c} text' for c in header)})")
        started = time.perf_counter()
        _psql(ref_conn, "-c", f"\\copy t from '{data}' csv header")
        ref = time.perf_counter() - started
        url = f"postgresql+psycopg://{base.split('://', 1)[1]}/{names[0]}"
        masters = prepare_store(folder, url)
        ours, rss, cpu = ffctl(folder, url, "import", "orders", str(data))
        again, rss2, _ = ffctl(folder, url, "import", "orders", str(data))
        floor = pg_floor(f"{base}/{names[0]}")
        floor_fk = pg_floor(f"{base}/{names[0]}", foreign_keys=True)
        return {
            "backend": "PostgreSQL",
            "ours": ours,
            "cpu": cpu,
            "ref": ref,
            "ref_name": "psql \\copy",
            "rss": max(rss, rss2),
            "rerun": again,
            "floor": floor,
            "floor_fk": floor_fk,
            "masters": masters,
        }
    finally:
        for name in names:
            _psql(PG_ADMIN, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# pg_floor(foreign_keys=True): the import's foreign keys, on the floor's copies
PG_FOREIGN_KEYS = {
    "orders": ["(customer) REFERENCES customer (customer)"],
    "order_line": ["(order_id) REFERENCES {p}orders (order_id)", "(sku) REFERENCES product (sku)"],
    "task": ["(order_id) REFERENCES {p}orders (order_id)"],
}


def pg_floor(conninfo: str, *, foreign_keys: bool = False) -> dict[str, tuple[int, float]]:
    """The server alone inserting the rows the import wrote: empty copies of orders, order_line,
    task and event with the same indexes, checks and defaults but no foreign keys (a lower bound:
    the import's rows are checked against theirs; ``foreign_keys``: with them, as the import), filled
    by ``INSERT ... SELECT`` table by table in one transaction. Returns table -> (rows, seconds)."""
    import psycopg

    spent = {}
    prefix = "floor_fk_" if foreign_keys else "floor_"
    with psycopg.connect(conninfo) as conn:
        for table in FLOOR_TABLES:
            conn.execute(f"CREATE TABLE {prefix}{table} (LIKE {table} INCLUDING ALL)")
            for i, key in enumerate(PG_FOREIGN_KEYS.get(table, ()) if foreign_keys else ()):
                conn.execute(
                    f"ALTER TABLE {prefix}{table} ADD CONSTRAINT {prefix}{table}_fk{i} FOREIGN KEY "
                    + key.format(p=prefix)
                )
        conn.commit()
        started = time.perf_counter()
        for table in FLOOR_TABLES:
            cur = conn.execute(f"INSERT INTO {prefix}{table} SELECT * FROM {table}")
            spent[table] = (cur.rowcount, time.perf_counter() - started)
            started = time.perf_counter()
        conn.commit()
        rows, seconds = spent["event"]
        spent["event"] = (rows, seconds + time.perf_counter() - started)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--dir", help="work folder (kept); default a temp folder, removed after")
    parser.add_argument(
        "--missing-promise",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of orders without promised_ship_date (filled from ATP) [default: 0]",
    )
    parser.add_argument("--record", action="store_true", help="write the figures to docs/performance.md")
    args = parser.parse_args()

    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ffctl-bench-import-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copy(REPO / "config.example.toml", folder / "ffctl.toml")
        started = time.perf_counter()
        info = generate(folder, args.lines, missing_promise=args.missing_promise)
        print(
            f"generated {info['lines']:,} lines / {info['orders']:,} orders, "
            f"{info['bytes'] / 1e6:.1f} MB in {time.perf_counter() - started:.1f}s"
        )
        data = folder / "orders.csv"
        results = []
        if args.backend in ("sqlite", "both"):
            results.append(bench_sqlite(folder, data))
        if args.backend in ("postgresql", "both"):
            pg = bench_postgresql(folder, data)
            if pg:
                results.append(pg)
        rows = []
        for r in results:
            floor, floor_fk = floor_seconds(r["floor"]), floor_seconds(r["floor_fk"])
            ratio = r["ours"] / floor
            rows.append(
                f"| {r['backend']} | {r['ours']:.1f} s ({info['lines'] / r['ours']:,.0f} lines/s; "
                f"process CPU {r['cpu']:.1f} s) | {floor:.1f} s | **{ratio:.2f}x** "
                f"{'(goal <= 2x: met)' if ratio <= 2 else '(goal <= 2x: NOT met)'} | "
                f"{floor_fk:.1f} s ({r['ours'] / floor_fk:.2f}x) | "
                f"{r['ref_name']} {r['ref']:.1f} s ({r['ours'] / r['ref']:.1f}x) | "
                f"{r['rss']} MB {'(<= 200: met)' if r['rss'] <= 200 else '(goal <= 200 MB: NOT met)'} | "
                f"{r['rerun']:.1f} s |"
            )
        table = [
            f"{info['lines']:,} order lines, {info['orders']:,} orders, {info['bytes'] / 1e6:.0f} MB "
            f"(`python bench/import.py --lines {args.lines}"
            + (f" --missing-promise {args.missing_promise}" if args.missing_promise else "")
            + f"`, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end):",
            "",
            "| store | ffctl import orders | floor (the database alone, no foreign keys) | ratio | floor with "
            "the foreign keys | the CSV loader | peak RSS | re-run (all unchanged) |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ]
        for r in results:
            table += ["", *floor_lines(r)]
        table += [
            "",
            "Masters, each a fresh import (`ffctl import KIND FILE`): "
            + "; ".join(
                f"{r['backend']} " + ", ".join(f"{kind} {seconds:.1f} s" for kind, seconds in r["masters"].items())
                for r in results
            )
            + f" ({info['skus']:,} products, {info['customers']:,} customers).",
        ]
        print("\n".join(table))
        if args.record:
            record(table)
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)


def floor_seconds(floor: dict) -> float:
    return sum(seconds for table, (_, seconds) in floor.items() if table in FLOOR_TABLES)


def floor_lines(r: dict) -> list[str]:
    """What bounds an import of this schema: the database's own time for the rows, as a ratio."""
    lines = []
    for key, what in (("floor", "no foreign keys"), ("floor_fk", "the foreign keys checked, as the import has them")):
        floor, ref = r[key], r["ref"]
        total = floor_seconds(floor)
        first = sum(floor[t][1] for t in ("orders", "order_line"))
        parts = ", ".join(f"{t} {n:,} rows {seconds:.1f} s" for t, (n, seconds) in floor.items() if t in FLOOR_TABLES)
        cpu = f" (CPU {floor['cpu'][1]:.1f} s)" if "cpu" in floor else ""
        lines += [
            f"Floor ({r['backend']}, {what}): {r['backend']} alone inserting the rows the import wrote, by "
            f"`INSERT ... SELECT` with this schema's indexes and checks, no Python: {parts}; "
            f"**all four {total:.1f} s{cpu} = {total / ref:.1f}x the CSV loader**; orders and lines alone "
            f"{first:.1f} s = {first / ref:.1f}x.",
            "",
        ]
    return lines[:-1]


def record(table: list[str]) -> None:
    body = "\n".join([SECTION, "", *table, "", *NOTES])
    print(f"recorded in {record_section('import.py', body)}")


NOTES = [
    "Issue 25's goal is the import <= 2x the floor without foreign keys, on both backends. Before this "
    "round, on a quiet machine (load 1.2): SQLite 88.3 s against a floor of 17.0 s (5.2x), PostgreSQL "
    "110.6 s against 24.6 s (4.5x). The run above (2026-12-02 18:38-19:01) shared the 2 cores with "
    "four test suites (load 12-22), so its wall times are 3-8x their CPU: SQLite's import used 49.4 s "
    "of CPU against the floor's 9.7 s (5.1x; 11.5 s with the foreign keys). Its ratios are not the "
    "goal's figures: those need a quiet machine.",
    "",
    "What `ffctl import orders` does that `.import`/`\\copy` do not: parse and validate every cell "
    "(types, times in the configured zone, SKUs and customers against the masters), stage rows so an "
    "order's lines stay together wherever they are in the file, check duplicates and disagreeing lines, "
    "compare each order with the store (re-imports add nothing), and for each new order write the order, "
    "its lines, its first workflow task with SLA deadlines, and two audit events, in batches of whole "
    "orders (one transaction each, so a killed import leaves whole orders); then ANALYZE the tables it "
    "grew by a large share, so the commands after it are planned for the new rows (included above: ~0.6 s "
    "on SQLite at this size). The re-run column is that same file imported again: every order found "
    "unchanged, nothing written.",
    "",
    "Where the time goes, 200k lines of the same file (phase timings from the import's progress "
    "callback, per-table write times by wrapping `bulk.insert_rows` and `bulk._copy`; the machine's "
    "speed varied by +-15% between runs). SQLite, 17 s in all: reading, validating and staging 4.1 s "
    "(the csv module, a generated row parser that remembers repeated cells, marshal, the staging "
    "insert), cross-row checks 0.5 s, then writing 12 s: the inserts 5.3-6.2 s (orders 1.4-1.9 s, "
    "lines 1.0-1.5 s, tasks 1.3-1.8 s, events 0.7-1.0 s; SQLite's own work is the lower bound above, "
    "the rest is the driver binding each value), and the rest reading the staged batches back, the "
    "content hash that recognises an unchanged order (~8 us an order), planning each order's workflow "
    "entry and deadlines, and commits.",
    "",
    "PostgreSQL, 22-25 s in all: the same 4.6 s of reading and staging, then 16-18 s of writing during "
    "which this process is busy only half the time: it waits for the server. COPY of order_line took "
    "7.4 s, orders 3.7 s, task 3.0 s, event 1.7 s: each order line is checked against its order and its "
    "product, each task and order against theirs, which the lower bound above leaves out. A writer "
    "thread runs each batch's transaction (lock, classify, COPY, commit, in file order) while the main "
    "thread prepares the next batch (hash, workflow entry, COPY text).",
    "",
    "Changes measured against the code before them (commit b57c586 vs ab87956, same machine, "
    "200k lines, three runs each, alternated): a value every row of a bulk insert shares (a status, a "
    "NULL, the batch's actor) is given once, not bound per row (a new task's row went from 20 bound "
    "values to 10, an event's from 9 to 5; the driver takes ~0.6 us to bind a NULL); orders that "
    "arrive while a node's calendar is closed share one deadline computation (19 -> 10 us an order on "
    "this file); naive times are converted with one offset subtraction (9 -> 2 us). SQLite: 18.8 / "
    "15.0 / 19.0 s before, 16.1 / 13.6 / 15.1 s after (-14%). PostgreSQL: process CPU 14.7 / 15.3 / "
    "15.4 s before, 13.3 / 12.3 / 12.0 s after (-17%), but wall time 19.9 / 21.3 / 20.4 s before and "
    "20.9 / 20.3 / 18.5 s after: the import waits for the server, whose foreign-key checks triple "
    "its work (orders, lines and tasks of 200k lines by INSERT ... SELECT: 3.2 s without foreign "
    "keys, 9.3 s with them; 5.4 s of it the two checks of each order line).",
    "",
    "On PostgreSQL an import's key lookups are now a semi-join: 20,000 customers took 14.9 s, "
    "because the second batch's '= ANY(array)' scanned the rows the first had written against every "
    "key; 1.6 s now. Counts of stock (`import stock`, 20,000 rows of 5,000 SKUs in 4 warehouses, "
    "outside this benchmark): 9.7 s -> 4.3 s, the same fix for (sku, warehouse) keys.",
    "",
    "Orders without a promised_ship_date get one from available-to-promise (`core.stock.promise_dates`). "
    "The import keeps one ATP ledger across its batches: each SKU's stock, receipts and open demand are "
    "read once, when an order first needs it, and every order written since (with or without a date of "
    "its own) consumes from there. The cost follows the file, not the store: "
    "with `--missing-promise 0.2`, importing 1M lines into SQLite took 62 s against 58 s for a file that "
    "carries every date (the core import call in one process, one after the other; promises ~4 s of CPU "
    "over 100 batches). Before, each batch re-read every open line of its SKUs, so an "
    "import needing promises grew quadratically: the same file took 161 s, 66 s of it promising.",
    "",
    "Where the time goes at 1M lines, SQLite (2026-12-02, issue 25; the core import in one process, each "
    "step's own thread CPU by wrapping it, at load 13-14, so wall times are ~3x their CPU): process CPU "
    "52-53 s against the floor's 10.4 s (wall 34.7 s at load 8). Reading, parsing, validating and staging "
    "11.2-11.5 s (3.1 s of it the staging inserts), cross-row checks 1.1 s, reading the staged batches "
    "back 2.2 s, the content hash 2.6 s, planning each order's workflow entry and deadlines 8.2-8.3 s, the "
    "inserts 19.0 s (orders 6.0, lines 5.3, tasks 4.6, events 3.0: SQLite's own work is the floor, the "
    "rest the driver binding each value and the foreign-key checks), commits 3.2-4.2 s, the per-batch "
    "cycle collection 1.4 s, ANALYZE 0.6 s. Each batch's commit used to checkpoint the WAL (the pages "
    "just written copied into the database file, with two fsyncs, and the hot index pages again at the "
    "next): the commits took 30.4 s wall / 4.2 s CPU; with the checkpoint deferred to one after the last "
    "batch, or one per GiB of WAL (`bulk.sqlite_defer_checkpoints`, as the floor's one transaction does) "
    "18.1 s / 3.2 s (measured with no GiB bound).",
    "",
    "The remaining limit (SQLite): the Python work that must precede or feed the inserts (parsing and "
    "staging ~11 s, hash and entry planning ~11 s) already costs ~2.2x the floor's CPU, before a row is "
    "inserted; on one core the goal of <= 2x cannot be met by trimming it. Meeting it takes the Python "
    "work overlapping SQLite's on the second core, as on PostgreSQL: a writer thread whose statements "
    "run without the GIL. The driver's executemany takes the GIL back for every row (a writer thread "
    "would get one row per 5 ms switch interval while the planner runs), so the rows would have to go "
    "in one statement per table and batch, e.g. `INSERT ... SELECT value->>0, ... FROM json_each(?)`: "
    "measured at 300k order lines and 200k orders rows, 1.3-1.5x the CPU of executemany for SQLite, but "
    "off the planning thread. Built since (branch importpipe, 2026-12-03), off by default: see that subsection below.",
    "",
    "The remaining limit (PostgreSQL): the server checks every order line against its order and its "
    "product, every task and order against theirs; the floor with the foreign keys (above) is what the "
    "server alone needs for the rows the import writes, and the import's writer thread already overlaps "
    "this process's work with it.",
    "",
    "Figures vary by 2x with the machine's load. The earlier goal of <= 3x the CSV loader cannot be met "
    "with this schema: the floor alone, the database inserting the rows every new order needs (its lines, "
    "its first workflow task, two audit events) before any parsing or validation, exceeds it on both.",
]


if __name__ == "__main__":
    main()
