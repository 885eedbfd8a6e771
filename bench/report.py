"""Benchmark `ffctl report kpi --by region` over a million orders with their full history.

    python bench/report.py                          # 1M orders, SQLite and PostgreSQL
    python bench/report.py --orders 100000 --backend sqlite
    python bench/report.py --record                 # also write the figures to docs/performance.md
    python bench/report.py --orders 1000000 --keep  # keep the store, then time every command over it:
    python bench/report.py --store URL --no-change --runs 5

Builds the store in SQL (a recursive CTE on SQLite, generate_series on PostgreSQL; no rows pass
through Python): 5,000 customers in 7 regions, 500 SKUs, 1-3 lines an order, a year of orders
through the example config's workflows (90% standard with 5% custom items, 10% the pilot),
one task per node visit with its deadline and SLA state, pick lines for half the orders (a few
picking errors), shipments, deliveries (some with issues), and the audit trail (created,
entered, skipped, completed, breached, reminded, escalated, shipped, delivered). The last 1% of
orders are still open at wave_pick.

Then times, in the same run: `kpi_report(by="region")` (the core call), the whole CLI process
`ffctl report kpi --by region --format json`, and the reference: a plain `SELECT count(*)` over
each table the report reads (orders, customer, order_line, pick_line, delivery, task, event).
Goal: the report <= 3 s on SQLite. PostgreSQL: FFCTL_BENCH_PG (default
postgresql://root@127.0.0.1:5432/test) names a server where the benchmark may create and drop
its own database.
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
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path

from _perfdoc import record_section  # bench/_perfdoc.py (bench/ is on sys.path when run)

BENCH = Path(__file__).resolve().parent

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PG_ADMIN = os.environ.get("FFCTL_BENCH_PG", "postgresql://root@127.0.0.1:5432/test")
CONFIG = REPO / "config.example.toml"
REGIONS = ["华东", "华南", "华北", "华中", "西南", "西北", "东北"]
YEAR_MINUTES = 525600
NOW = datetime(2026, 1, 2, tzinfo=timezone.utc)  # the report's clock: a day after the last order

# node -> (seq in standard, seq in pilot, SLA seconds, owner)
NODES = {
    "credit_review": (0, 0, 1800, "finance_reviewer"),
    "tech_confirm": (1, None, 14400, "engineering"),
    "allocation": (2, 1, 600, None),
    "wave_pick": (3, None, 7200, "warehouse"),
    "pack_check": (4, None, 3600, "warehouse"),
    "dispatch": (5, 2, 172800, "warehouse"),
}


class Dialect:
    def __init__(self, sqlite: bool) -> None:
        self.sqlite = sqlite

    def ts(self, minutes: str) -> str:
        """A UTC timestamp ``minutes`` after 2025-01-01, as the store keeps it."""
        if self.sqlite:
            return f"(strftime('%Y-%m-%d %H:%M:%S', 2460676.5 + ({minutes}) / 1440.0) || '.000000')"
        return f"(TIMESTAMP '2025-01-01' + ({minutes}) * INTERVAL '1 minute')"

    def local_date_plus(self, minutes: str, days: int) -> str:
        """The Asia/Shanghai date of that instant, plus ``days``."""
        if self.sqlite:
            return f"date(2460676.5 + ({minutes} + 480) / 1440.0, '+{days} days')"
        return f"(CAST(TIMESTAMP '2025-01-01' + ({minutes} + 480) * INTERVAL '1 minute' AS DATE) + {days})"

    def series(self, n: int) -> str:
        if self.sqlite:
            return f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) "
        return f"WITH s(i) AS (SELECT generate_series(CAST(1 AS BIGINT), {n})) "

    def text(self, expr: str) -> str:
        return f"CAST({expr} AS TEXT)"

    def pad(self, expr: str, width: int) -> str:
        if self.sqlite:
            return f"printf('%0{width}d', {expr})"
        return f"lpad(CAST({expr} AS TEXT), {width}, '0')"


def build(conn, n: int, d: Dialect) -> dict[str, float]:
    """Fill an empty, migrated store with ``n`` orders and their history; seconds per table."""
    timings: dict[str, float] = {}

    def run(label: str, sql: str) -> None:
        start = time.perf_counter()
        conn.exec_driver_sql(sql if d.sqlite else sql.replace("%", "%%"))
        timings[label] = timings.get(label, 0.0) + time.perf_counter() - start

    open_from = n - n // 100  # orders after this are still at wave_pick
    regions = " ".join(f"WHEN {k} THEN '{r}'" for k, r in enumerate(REGIONS))
    run(
        "customer",
        d.series(5000)
        + (
            "INSERT INTO customer (customer, name, tier, region, sales_rep) "
            f"SELECT 'C' || {d.pad('i', 5)}, '客户' || {d.pad('i', 5)}, 'gold', CASE i % 7 {regions} END, "
            f"'rep' || {d.text('i % 40')} FROM s"
        ),
    )
    run(
        "product",
        d.series(500)
        + (
            "INSERT INTO product (sku, name, category, safety_stock, custom) "
            f"SELECT 'SKU' || {d.pad('i', 4)}, 'Product ' || {d.text('i')}, 'cat' || {d.text('i % 20')}, 0, "
            "(i % 20 = 3) FROM s"
        ),
    )
    # per-order plan: pilot?, custom?, node durations (minutes) -> the minute each node is entered
    run(
        "plan",
        "CREATE TABLE bench_plan AS "
        + d.series(n)
        + (
            "SELECT i, pilot, custom, m0, m0 + d0 AS m1, m0 + d0 + d1 AS m2, m0 + d0 + d1 + d2 AS m3, "
            "m0 + d0 + d1 + d2 + d3 AS m4, m0 + d0 + d1 + d2 + d3 + d4 AS m5, m0 + d0 + d1 + d2 + d3 + d4 + d5 AS m6 "
            "FROM (SELECT i, pilot, custom, m0, 2 + (i * 7919) % 34 AS d0, "
            "CASE WHEN custom = 1 THEN 30 + (i * 104729) % 240 ELSE 0 END AS d1, 1 + (i * 1299709) % 12 AS d2, "
            "CASE WHEN pilot = 1 THEN 0 ELSE 20 + (i * 15485863) % 110 END AS d3, "
            "CASE WHEN pilot = 1 THEN 0 ELSE 10 + (i * 32452843) % 55 END AS d4, "
            "60 * (4 + (i * 49979687) % 40) + CASE WHEN i % 97 = 0 THEN 1800 ELSE 0 END AS d5 FROM ("
            f"SELECT i, CASE WHEN i % 10 = 0 THEN 1 ELSE 0 END AS pilot, CASE WHEN i % 20 = 3 THEN 1 ELSE 0 END AS custom, "
            f"(i - 1) * {YEAR_MINUTES}.0 / {n} AS m0 FROM s) a) b"
        ),
    )
    oid = f"'SO' || {d.pad('i', 7)}"
    shipped = f"i < {open_from}"
    delivered = f"{shipped} AND i % 50 <> 0"
    run(
        "orders",
        (
            "INSERT INTO orders (order_id, customer, channel, region, sales_rep, priority, created_at, promised_ship_date, "
            "promise_source, status, workflow, node, has_custom_items, shipped_at, delivered_at, delivery_issue) "
            f"SELECT {oid}, 'C' || {d.pad('1 + i % 5000', 5)}, "
            "CASE WHEN pilot = 1 THEN 'b2b' WHEN i % 3 = 0 THEN 'tmall' WHEN i % 3 = 1 THEN 'jd' ELSE 'wechat' END, "
            f"CASE WHEN pilot = 1 THEN 'east' WHEN i % 10 < 3 THEN CASE i % 7 {regions} END END, "
            f"'rep' || {d.text('i % 40')}, 0, {d.ts('m0')}, {d.local_date_plus('m0', 2)}, 'import', "
            f"CASE WHEN {delivered} THEN 'delivered' WHEN {shipped} THEN 'shipped' ELSE 'open' END, "
            f"CASE WHEN pilot = 1 THEN 'pilot' ELSE 'standard' END, CASE WHEN {shipped} THEN NULL ELSE 'wave_pick' END, "
            "custom = 1, "
            f"CASE WHEN {shipped} THEN {d.ts('m6')} END, CASE WHEN {delivered} THEN {d.ts('m6 + 1440')} END, "
            f"CASE WHEN {delivered} AND i % 40 = 7 THEN 'damaged' END FROM bench_plan"
        ),
    )
    run(
        "order_line",
        (
            "INSERT INTO order_line (order_id, line_no, sku, qty, unit_price, allocated) "
            f"SELECT {oid}, k, 'SKU' || {d.pad('1 + (i * 31 + k * 17) % 500', 4)}, 1 + (i + k) % 5, 9.9, 0 "
            "FROM bench_plan JOIN (SELECT 1 AS k UNION ALL SELECT 2 UNION ALL SELECT 3) ks ON ks.k <= 1 + i % 3"
        ),
    )
    run(
        "pick_line",
        (
            "INSERT INTO pick_line (order_id, line_no, sku, qty) "
            f"SELECT {oid}, k, 'SKU' || {d.pad('1 + (i * 31 + k * 17) % 500', 4)}, "
            "1 + (i + k) % 5 + CASE WHEN (i * 7 + k) % 997 = 0 THEN 1 ELSE 0 END "
            f"FROM bench_plan JOIN (SELECT 1 AS k UNION ALL SELECT 2 UNION ALL SELECT 3) ks ON ks.k <= 1 + i % 3 "
            f"WHERE {shipped} AND i % 2 = 0"
        ),
    )
    run(
        "shipment",
        f"INSERT INTO shipment (shipment_id, order_id, shipped_at, carrier) SELECT {oid} || '/1', {oid}, "
        f"{d.ts('m6')}, 'SF' "
        f"FROM bench_plan WHERE {shipped}",
    )
    run(
        "delivery",
        (
            f"INSERT INTO delivery (order_id, delivered_at, issue) SELECT {oid}, {d.ts('m6 + 1440')}, "
            f"CASE WHEN i % 40 = 7 THEN 'damaged' END FROM bench_plan WHERE {delivered}"
        ),
    )
    now_minutes = (NOW - datetime(2025, 1, 1, tzinfo=timezone.utc)).total_seconds() / 60
    for k, (node, (seq, pilot_seq, sla, owner)) in enumerate(NODES.items()):
        entered, left = f"m{k}", f"m{k + 1}"
        sla_min = sla / 60
        is_open = f"(i >= {open_from} AND {k} = 3)"
        started = f"(i < {open_from} OR {k} <= 3)"
        skipped = "(custom = 0)" if node == "tech_confirm" else "(1 = 0)"
        applies = "pilot = 0" if pilot_seq is None else "1 = 1"
        seq_expr = f"{seq}" if pilot_seq is None else f"CASE WHEN pilot = 1 THEN {pilot_seq} ELSE {seq} END"
        late = f"({left} - {entered} > {sla_min})"
        late_open = f"({now_minutes} - {entered} > {sla_min})"
        run(
            "task",
            (
                "INSERT INTO task (order_id, workflow, node, seq, status, owner, entered_at, sla_seconds, risk_at, "
                "deadline, sla_state, paused_seconds, next_step, escalation_level, next_action_at, completed_at, "
                "completed_by, outcome) "
                f"SELECT {oid}, CASE WHEN pilot = 1 THEN 'pilot' ELSE 'standard' END, '{node}', {seq_expr}, "
                f"CASE WHEN {skipped} THEN 'skipped' WHEN {is_open} THEN 'open' ELSE 'done' END, "
                f"{'NULL' if owner is None else repr(owner)}, {d.ts(entered)}, {sla}, {d.ts(f'{entered} + {sla_min * 0.75}')}, "
                f"{d.ts(f'{entered} + {sla_min}')}, "
                f"CASE WHEN {skipped} THEN 'on_track' WHEN {is_open} THEN CASE WHEN {late_open} THEN 'breached' "
                f"ELSE 'on_track' END WHEN {late} THEN 'breached' ELSE 'on_track' END, 0, 0, 0, "
                f"CASE WHEN {is_open} THEN {d.ts(f'{entered} + {sla_min}')} END, "
                f"CASE WHEN {is_open} THEN NULL ELSE {d.ts(left)} END, "
                f"CASE WHEN {is_open} THEN NULL ELSE 'bench' END, "
                f"CASE WHEN {skipped} THEN 'skipped' WHEN {is_open} THEN NULL ELSE 'completed' END "
                f"FROM bench_plan WHERE {applies} AND {started}"
            ),
        )
        ev = (
            "INSERT INTO event (at, wall_at, actor, event, order_id, node, detail) "
            "SELECT at, at, 'bench', event, order_id, node, detail FROM ("
        )
        run(
            "event",
            ev
            + (
                f"SELECT {d.ts(entered)} AS at, CASE WHEN {skipped} THEN 'skipped' ELSE 'entered' END AS event, "
                f"{oid} AS order_id, '{node}' AS node, NULL AS detail FROM bench_plan WHERE {applies} AND {started}) e"
            ),
        )
        run(
            "event",
            ev
            + (
                f"SELECT {d.ts(left)} AS at, 'completed' AS event, {oid} AS order_id, '{node}' AS node, NULL AS detail "
                f"FROM bench_plan WHERE {applies} AND {started} AND NOT {skipped} AND NOT {is_open}) e"
            ),
        )
        breached = f"(({late} AND NOT {is_open}) OR ({is_open} AND {late_open}))"
        run(
            "event",
            ev
            + (
                f"SELECT {d.ts(f'{entered} + {sla_min}')} AS at, x.event, {oid} AS order_id, '{node}' AS node, "
                "NULL AS detail FROM bench_plan "
                "JOIN (SELECT 'breached' AS event UNION ALL SELECT 'reminded') x ON 1 = 1 "
                f"WHERE {applies} AND {started} AND NOT {skipped} AND {breached}) e"
            ),
        )
        run(
            "event",
            ev
            + (
                f"SELECT {d.ts(f'{entered} + {sla_min} + 30')} AS at, 'escalated' AS event, {oid} AS order_id, "
                f"'{node}' AS node, NULL AS detail FROM bench_plan WHERE {applies} AND {started} AND NOT {skipped} "
                f"AND ((NOT {is_open} AND {left} - {entered} > {sla_min} + 30) OR ({is_open} AND {now_minutes} - {entered} > {sla_min} + 30))) e"
            ),
        )
    run(
        "event",
        "INSERT INTO event (at, wall_at, actor, event, order_id, detail) "
        f"SELECT {d.ts('m0')}, {d.ts('m0')}, 'bench', 'created', {oid}, NULL FROM bench_plan",
    )
    run(
        "event",
        "INSERT INTO event (at, wall_at, actor, event, order_id) "
        f"SELECT {d.ts('m6')}, {d.ts('m6')}, 'bench', 'shipped', {oid} FROM bench_plan WHERE {shipped}",
    )
    run(
        "event",
        "INSERT INTO event (at, wall_at, actor, event, order_id) "
        f"SELECT {d.ts('m6 + 1440')}, {d.ts('m6 + 1440')}, 'bench', 'delivered', {oid} FROM bench_plan "
        f"WHERE {delivered}",
    )
    run("plan", "DROP TABLE bench_plan")
    return timings


TABLES = ("orders", "customer", "order_line", "pick_line", "delivery", "task", "event")


def count_all(engine) -> tuple[float, dict[str, int]]:
    start = time.perf_counter()
    counts = {}
    with engine.connect() as conn:
        for table in TABLES:
            counts[table] = conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
    return time.perf_counter() - start, counts


def time_report(store, cfg, runs: int) -> tuple[float, list[dict]]:
    """What `report kpi --by region` does after its start-up: refresh the facts, then report."""
    from ffctl.core.kpi import kpi_report, refresh_facts

    times, rows = [], []
    for _ in range(runs):
        start = time.perf_counter()
        refresh_facts(store, cfg, cuts=("region",), now=NOW)
        with store.session() as s:
            rows = kpi_report(s, cfg, now=NOW, by="region")
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


def time_catch_up(store, cfg) -> tuple[float, dict]:
    """The first refresh after the history was written behind ffctl's back: every order's facts."""
    from ffctl.core.kpi import refresh_facts

    start = time.perf_counter()
    result = refresh_facts(store, cfg, cuts=("region",), now=NOW)
    return time.perf_counter() - start, result


def time_changes(store, cfg, changed: int, *, real: bool = False) -> tuple[float, dict]:
    """``changed`` orders get an audit event (``real``: and a real change, ``change_orders``), as a
    day of shipping and deliveries would write; then refresh + report, timed."""
    from ffctl.core.kpi import kpi_report, refresh_facts

    change_orders(store, changed, real=real)
    start = time.perf_counter()
    result = refresh_facts(store, cfg, cuts=("region",), now=NOW)
    with store.session() as s:
        kpi_report(s, cfg, now=NOW, by="region")
    return time.perf_counter() - start, result


def store_orders(store) -> int:
    with store.engine.connect() as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM orders").scalar()


def compile_ffctl() -> None:
    """ffctl's bytecode, as an installed ffctl has it (pip compiles a wheel's modules): with
    PYTHONDONTWRITEBYTECODE set, each timed process would compile ffctl's sources (~0.2 s for a report)."""
    import compileall

    compileall.compile_dir(REPO / "ffctl", quiet=1)


def time_cli(url: str, runs: int) -> float:
    compile_ffctl()
    exe = shutil.which("ffctl", path=str(Path(sys.executable).parent)) or shutil.which("ffctl")
    env = dict(os.environ, FFCTL_CONFIG=str(CONFIG), FFCTL_DB=url, FFCTL_NOW=NOW.isoformat())
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [exe, "report", "kpi", "--by", "region", "--format", "json"], env=env, check=True, capture_output=True
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


#: Every report command, as users run them (``report kpi`` with each ``--by``, ``report sla``, ``report flow``,
#: the dashboard, ``report misses``, ``report workload``).
COMMANDS = [
    ["report", "kpi"],
    *(
        ["report", "kpi", "--by", by]
        for by in ("region", "channel", "team", "customer", "week", "node", "product", "category", "workflow")
    ),
    ["report", "sla"],
    ["report", "flow"],
    ["report", "dashboard", "--out", "-"],
    ["report", "misses"],
    ["report", "workload"],
]


#: CPU seconds (user + system) of the last timed process, per command name (``time_commands``, ``time_change_all``)
CPU: dict[str, float] = {}


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_commands(url: str, commands: list[list[str]] = COMMANDS, runs: int = 1) -> dict[str, float]:
    """Each report command as a whole process with the facts current, once untimed (the first call
    of each cut builds its indexes), then ``runs`` times: the median wall time, its CPU (``CPU``)
    and, on PostgreSQL, the server backends' (``SERVER_CPU``); ``SPREAD``: min and max of the
    process's CPU plus the server's over the runs."""
    compile_ffctl()
    exe = shutil.which("ffctl", path=str(Path(sys.executable).parent)) or shutil.which("ffctl")
    env = dict(os.environ, FFCTL_CONFIG=str(CONFIG), FFCTL_DB=url, FFCTL_NOW=NOW.isoformat())
    out = {}
    for args in commands:
        fmt = [] if "dashboard" in args else ["--format", "json"]
        subprocess.run([exe, *args, *fmt], env=env, check=True, capture_output=True)
        name = " ".join(a for a in args if a not in ("--out", "-"))
        timed = []
        for _ in range(runs):
            with ServerCpu(url) as server:
                start, cpu = time.perf_counter(), _children_cpu()
                subprocess.run([exe, *args, *fmt], env=env, check=True, capture_output=True)
                wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
            timed.append((cpu + (server.seconds or 0.0), wall, cpu, server.seconds))
        timed.sort(key=lambda t: t[0])
        total, out[name], CPU[name], SERVER_CPU[name] = timed[len(timed) // 2]
        SPREAD[name] = (timed[0][0], timed[-1][0])
    return out


#: which orders ``change_orders`` changes: "spread" (every n-th by id, across the whole year: the
#: worst case for the caches) or "recent" (the newest by created_at, as a day's operations would)
CHANGE_WHICH = "spread"


def changed_orders_sql(store, changed: int) -> str:
    """The ``changed`` orders ``change_orders`` picks (see ``CHANGE_WHICH``), as a SELECT of order_id."""
    if CHANGE_WHICH == "recent":
        return f"SELECT order_id FROM orders ORDER BY created_at DESC, order_id LIMIT {changed}"
    step = max(1, store_orders(store) // changed)
    return (
        "SELECT order_id FROM (SELECT order_id, ROW_NUMBER() OVER (ORDER BY order_id) AS rn FROM orders) o "
        f"WHERE MOD(rn, {step}) = 0"
    )


def change_orders(store, changed: int, *, real: bool = False) -> None:
    """``changed`` orders (``changed_orders_sql``) get an audit event naming them. An 'updated' event
    alone changes no fact (``real`` False); with ``real`` each order also truly changes as a late
    day of operations would: its last closed visit entered 15 and left 45 minutes later (visit
    time, SLA, breaches, flow edges) and, if shipped, it shipped 3 days later (cycle time, on-time,
    perfect, misses, and the copies of these on its visit and group rows)."""
    sqlite = store.is_sqlite

    def later(col: str, minutes: int) -> str:
        if sqlite:
            return f"strftime('%Y-%m-%d %H:%M:%S', {col}, '+{minutes} minutes') || '.000000'"
        return f"{col} + INTERVAL '{minutes} minutes'"

    chosen = changed_orders_sql(store, changed)
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TEMP TABLE bench_changed AS {chosen}")
        if real:
            conn.exec_driver_sql(
                f"UPDATE task SET entered_at = {later('entered_at', 15)}, completed_at = {later('completed_at', 45)} "
                "WHERE id IN (SELECT MAX(t.id) FROM task t WHERE t.order_id IN (SELECT order_id FROM bench_changed) "
                "AND t.completed_at IS NOT NULL AND t.status <> 'skipped' GROUP BY t.order_id)"
            )
            for table in ("orders", "shipment"):
                conn.exec_driver_sql(
                    f"UPDATE {table} SET shipped_at = {later('shipped_at', 3 * 1440)} "
                    "WHERE order_id IN (SELECT order_id FROM bench_changed) AND shipped_at IS NOT NULL"
                )
        conn.exec_driver_sql(
            "INSERT INTO event (at, wall_at, actor, event, order_id) SELECT o.created_at, o.created_at, 'bench', "
            "'updated', o.order_id FROM orders o WHERE o.order_id IN (SELECT order_id FROM bench_changed)"
        )
        conn.exec_driver_sql("DROP TABLE bench_changed")


class ServerCpu:
    """PostgreSQL: CPU seconds of the server backends serving ``database`` while in the ``with``
    (the server runs on this machine: /proc of its processes, sampled every 20 ms, so a backend's
    last 20 ms may be missed); None on SQLite."""

    def __init__(self, url: str) -> None:
        self.database = None if url.startswith("sqlite") else url.rsplit("/", 1)[1].split("?")[0]
        self.seen: dict[int, float] = {}
        self.seconds: float | None = None

    def _sample(self) -> None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().decode(errors="replace")
                if cmd.startswith("postgres: ") and f" {self.database} " in cmd:
                    self.seen[int(pid)] = _proc_cpu(int(pid))
            except OSError:
                continue

    def __enter__(self):
        import threading

        self.stop = threading.Event()
        if self.database:
            self._sample()
            self.before = dict(self.seen)

            def run() -> None:
                while not self.stop.wait(0.02):
                    self._sample()

            self.thread = threading.Thread(target=run, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.database:
            self.stop.set()
            self.thread.join()
            self._sample()
            self.seconds = sum(cpu - self.before.get(pid, 0.0) for pid, cpu in self.seen.items())


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process on this machine."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: server backend CPU seconds (PostgreSQL) of the last timed process, per command name (``time_change_all``)
SERVER_CPU: dict[str, float | None] = {}
#: min and max of a command's CPU (its process's plus, on PostgreSQL, the server's) over its timed runs
SPREAD: dict[str, tuple[float, float]] = {}


def time_change_all(
    store, url: str, cfg, changed: int, commands: list[list[str]] = COMMANDS, *, real: bool = False
) -> dict[str, float]:
    """``changed`` more orders get an audit event (``real``: and a real change, ``change_orders``),
    then each command's refresh + report, as a process."""
    compile_ffctl()
    out = {}
    for args in commands:
        change_orders(store, changed, real=real)
        exe = shutil.which("ffctl", path=str(Path(sys.executable).parent)) or shutil.which("ffctl")
        env = dict(os.environ, FFCTL_CONFIG=str(CONFIG), FFCTL_DB=url, FFCTL_NOW=NOW.isoformat())
        fmt = [] if "dashboard" in args else ["--format", "json"]
        name = " ".join(a for a in args if a not in ("--out", "-"))
        with ServerCpu(url) as server:
            start, cpu = time.perf_counter(), _children_cpu()
            subprocess.run([exe, *args, *fmt], env=env, check=True, capture_output=True)
            out[name] = time.perf_counter() - start
            CPU["changed " + name] = _children_cpu() - cpu
        SERVER_CPU["changed " + name] = server.seconds
    return out


def time_floor(store, url: str, cfg, changed: int) -> None:
    """What any refresh from the audit trail must do after ``changed`` orders change, against the
    3 s goal: the report alone (facts current, the core call), then, after the change, reading each
    changed order's history once (``kpi.copy_history``: its rows of every history table, in a
    transaction rolled back; no fact computed or written), then today's refresh + report (which
    finds that history warm). The first two together are a floor: no fact design that recomputes
    a changed order's facts from its history can refresh and report in less."""
    import sqlalchemy as sa

    from ffctl.core import kpi

    kpi.refresh_facts(store, cfg, cuts=("region",), now=NOW)
    with ServerCpu(url) as server:
        start, cpu = time.perf_counter(), time.process_time()
        with store.session() as s:
            kpi.kpi_report(s, cfg, now=NOW, by="region")
        report, report_cpu = time.perf_counter() - start, time.process_time() - cpu
    report_server = server.seconds
    change_orders(store, changed)
    with ServerCpu(url) as server, store.session(write=True) as s:
        start = time.perf_counter()
        seen = s.execute(sa.text("SELECT event_id FROM fact_state WHERE id = 1")).scalar_one()
        s.execute(sa.text(f"CREATE TEMP TABLE IF NOT EXISTS {kpi._DIRTY} (order_id TEXT PRIMARY KEY)"))
        s.execute(sa.text(f"DELETE FROM {kpi._DIRTY}"))
        s.execute(
            sa.text(
                f"INSERT INTO {kpi._DIRTY} SELECT DISTINCT order_id FROM event WHERE id > :seen AND order_id IS NOT NULL"
            ),
            {"seen": seen},
        )
        sql = kpi._Sql(s, cfg.timezone, NOW)
        sql.tune()
        kpi.copy_history(s, sql, kpi._DIRTY)
        rows = {t: s.execute(sa.text(f"SELECT count(*) FROM {kpi._COPY}{t}")).scalar_one() for t in kpi.HISTORY}
        read = time.perf_counter() - start
        s.rollback()
    read_server = server.seconds
    with ServerCpu(url) as server:
        start, cpu = time.perf_counter(), time.process_time()
        kpi.refresh_facts(store, cfg, cuts=("region",), now=NOW)
        with store.session() as s:
            kpi.kpi_report(s, cfg, now=NOW, by="region")
        today, today_cpu = time.perf_counter() - start, time.process_time() - cpu
    pg = lambda x: "" if x is None else f" + server {x:.2f} s"  # noqa: E731
    print(
        f"floor after {changed:,} orders changed ({CHANGE_WHICH}), load {os.getloadavg()[0]:.1f}:\n"
        f"  report alone (facts current)            {report:6.2f} s (CPU {report_cpu:.2f} s{pg(report_server)})\n"
        f"  reading the changed orders' history     {read:6.2f} s{pg(read_server)} "
        f"({sum(rows.values()):,} rows: {', '.join(f'{t} {n:,}' for t, n in rows.items())})\n"
        f"  floor (the two)                         {report + read:6.2f} s against the goal of 3 s\n"
        f"  today's refresh + report                {today:6.2f} s (CPU {today_cpu:.2f} s{pg(server.seconds)})",
        flush=True,
    )


def profile_refresh(store, url: str, cfg, changed: int, *, real: bool) -> None:
    """In this process: ``changed`` orders change (``change_orders``), then ``refresh_facts`` with
    each statement's wall time (and, on PostgreSQL, its server backend's CPU), the slowest first."""
    from sqlalchemy import event

    from ffctl.core.kpi import refresh_facts

    change_orders(store, changed, real=real)
    steps: list[tuple[float, float | None, str, int]] = []

    def backend_cpu(conn) -> float | None:
        return None if store.is_sqlite else _proc_cpu(conn.connection.dbapi_connection.info.backend_pid)

    def before(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_start"] = (time.perf_counter(), backend_cpu(conn))

    def after(conn, cursor, statement, parameters, context, executemany):
        start, cpu = conn.info.pop("bench_start")
        end = backend_cpu(conn)
        wall = time.perf_counter() - start
        steps.append((wall, None if cpu is None or end is None else end - cpu, statement, max(cursor.rowcount, 0)))

    event.listen(store.engine, "before_cursor_execute", before)
    event.listen(store.engine, "after_cursor_execute", after)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        result = refresh_facts(store, cfg, cuts=("region",), now=NOW)
        wall, client = time.perf_counter() - start, time.process_time() - cpu
    finally:
        event.remove(store.engine, "before_cursor_execute", before)
        event.remove(store.engine, "after_cursor_execute", after)
    server = sum(c for _, c, _, _ in steps if c is not None) if not store.is_sqlite else None
    print(
        f"profile ({'real change' if real else 'no-op change'}): refresh_facts {result} {wall:.2f} s wall, "
        f"client CPU {client:.2f} s, server CPU {'-' if server is None else f'{server:.2f} s'}, "
        f"{len(steps)} statements, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    kinds: dict[str, list[float]] = {}
    for t, c, statement, rows in steps:
        words = statement.split()
        kind = (
            "compute (INSERT INTO fact_stage)"
            if words[:3] in (["INSERT", "INTO", "fact_stage"], ["INSERT", "INTO", "temp.fact_stage"])
            else f"{words[0]} {words[2] if words[0] in ('INSERT', 'DELETE') else ''}".strip()
        )
        kinds.setdefault(kind, [0.0, 0.0, 0, 0])
        kinds[kind][0] += t
        kinds[kind][1] += c or 0.0
        kinds[kind][2] += 1
        kinds[kind][3] += rows
    for kind, (t, c, n, rows) in sorted(kinds.items(), key=lambda x: -x[1][0]):
        print(f"  {t:6.3f} s  cpu {c:5.2f} s  {n:3d} x {kind}, {int(rows):,} rows", flush=True)
    for t, c, statement, _rows in sorted(steps, key=lambda x: -x[0])[:8]:
        text = " ".join(statement.split())
        print(f"  {t:6.3f} s  {'' if c is None else f'cpu {c:5.2f} s'}  {text[:150]}", flush=True)


@contextmanager
def scratch_store(backend: str, tmp: Path, *, keep: bool = False):
    """A fresh store at the schema's head for one bench run, as (store, url): a SQLite file in
    ``tmp`` or a PostgreSQL database of its own, dropped with ``tmp`` afterwards unless ``keep``."""
    from ffctl.core.store import Store

    pg_name = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'bench.db'}"
    else:
        import psycopg

        pg_name = f"ffctl_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {pg_name}")
        url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{pg_name}"
    store = Store(url)
    try:
        store.upgrade()
        yield store, url
    finally:
        store.dispose()
        if keep:
            print(f"kept the store: {url}", flush=True)
        else:
            if pg_name:
                import psycopg

                with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                    c.execute(f"DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")
            shutil.rmtree(tmp, ignore_errors=True)


def bench(backend: str, n: int, runs: int, analyze: bool, keep: bool = False, commands: bool = False) -> dict:
    from ffctl.core.config import load_config

    cfg = load_config(CONFIG)
    tmp = Path(tempfile.mkdtemp(prefix="ffctl-bench-report-"))
    with scratch_store(backend, tmp, keep=keep) as (store, url):
        start = time.perf_counter()
        with store.engine.begin() as conn:
            timings = build(conn, n, Dialect(store.is_sqlite))
        if analyze or not store.is_sqlite:
            with store.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
        if not store.is_sqlite:  # PostgreSQL's autovacuum would do this soon after a bulk load
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM")
        build_seconds = time.perf_counter() - start
        count_all(store.engine)  # warm the cache for both measurements alike
        count_seconds, counts = count_all(store.engine)
        catch_up, caught = time_catch_up(store, cfg)
        report_seconds, rows = time_report(store, cfg, runs)
        cli_seconds = time_cli(url, max(1, runs // 2))
        changed = max(1, n // 100)
        change_seconds, refreshed = time_changes(store, cfg, changed)
        real_change_seconds, _ = time_changes(store, cfg, changed, real=True)
        every = time_commands(url) if commands else {}
        every_changed = time_change_all(store, url, cfg, changed) if commands else {}
        size = (tmp / "bench.db").stat().st_size if store.is_sqlite else None
        return {
            "backend": backend,
            "orders": n,
            "build": build_seconds,
            "timings": timings,
            "counts": counts,
            "count": count_seconds,
            "report": report_seconds,
            "cli": cli_seconds,
            "rows": rows,
            "size": size,
            "analyze": analyze or not store.is_sqlite,
            "catch_up": catch_up,
            "caught": caught,
            "change": change_seconds,
            "real_change": real_change_seconds,
            "refreshed": refreshed,
            "every": every,
            "every_changed": every_changed,
        }


def describe(r: dict) -> str:
    counts = ", ".join(f"{t} {c:,}" for t, c in r["counts"].items())
    size = f"; file {r['size'] / 1e9:.2f} GB" if r["size"] else ""
    on_time = next(x for x in r["rows"] if x["kpi"] == "on_time_shipping")
    bottleneck = next(x for x in r["rows"] if x["kpi"] == "bottleneck")
    return (
        f"{r['backend']}: built in {r['build']:.0f} s ({counts}{size})\n"
        f"  first refresh: facts of {r['caught']['orders']:,} orders ({r['caught']['mode']}) {r['catch_up']:6.2f} s\n"
        f"  report kpi --by region (core, median)   {r['report']:6.2f} s\n"
        f"  ffctl report kpi --by region (process)   {r['cli']:6.2f} s\n"
        f"  after {r['refreshed']['orders']:,} orders changed: refresh + report {r['change']:6.2f} s (an event "
        f"that changes no fact), {r['real_change']:6.2f} s (a real change)\n"
        f"  SELECT count(*) over the {len(TABLES)} tables       {r['count']:6.2f} s\n"
        f"  ratio report / count(*)                  {r['report'] / r['count']:6.1f}x\n"
        f"  e.g. on_time_shipping {on_time['group']}: {on_time['actual']} of {on_time['count']:,}; "
        f"bottleneck {bottleneck['group']}: {bottleneck['node']}"
        + "".join(
            f"\n  ffctl {cmd:<34} {t:6.2f} s (ratio {t / r['count']:5.1f}x); after 1% changed "
            f"{r['every_changed'].get(cmd, float('nan')):6.2f} s"
            for cmd, t in r["every"].items()
        )
    )


def record(results: list[dict], command: str) -> None:
    body = "\n\n".join(describe(r) for r in results)
    sqlite = next((r for r in results if r["backend"] == "sqlite"), None)
    verdict = ""
    if sqlite:
        worst = max(sqlite["report"], sqlite["cli"], sqlite["change"], sqlite["real_change"])
        verdict = (
            f"Goal <= 3 s on SQLite: {'met' if worst <= 3 else 'not met'} "
            f"({sqlite['report']:.2f} s for the core call, {sqlite['cli']:.2f} s for the whole process, "
            f"{sqlite['real_change']:.2f} s when 1% of the orders changed since the last report)."
        )
    section = f"""## KPI report (`bench/report.py`)

`{command}` on CPython {platform.python_version()}, {platform.machine()}, {date.today().isoformat()}; 2 cores shared
with other jobs (load average {os.getloadavg()[0]:.1f} when the run ended).
A year of orders with full history built in SQL (customers, products, 1-3 lines an order, one task per
node visit with deadline and SLA state, pick lines for half the orders, shipments, deliveries, the
audit trail); the last 1% still open. Timed, in the same run: the first refresh of the report facts
(the history was written behind ffctl's back, so it builds every order's facts); then
`refresh_facts` + `kpi_report(by="region")` (the core of the command, median of the runs) and the
whole `ffctl report kpi --by region --format json` process; then 1% of the orders get an audit event
(what a few days of shipping and deliveries write) and one more refresh + report; against a plain
`SELECT count(*)` of every table the report used to read.

```
{body}
```

{verdict}

How: a report reads `order_fact`, one narrow row per order (confirmation, allocation and cycle
times; shipped, on-time, delivered, perfect, pick and SLA counters; region, channel, rep, customer,
week), and `node_fact`, the few node visits that weigh in the bottleneck (breached, over deadline
or open). `kpi.refresh_facts` keeps them: every change to an order writes an audit event, so a
refresh rewrites, set-based, the facts of the orders named by events since its last event id
(and of customers whose region changed) and costs what changed. On SQLite, which has no hash
aggregation and no percentile function, a cut's per-group sums read a covering index on
(group, conf, ...) in order, and each exact percentile is an OFFSET to its rank inside the group's
range of an index on (group, time): no sort of a million rows per report. PostgreSQL groups and
runs `percentile_cont` over `order_fact` in one query.

The first refresh after a bulk history (an upgrade to schema 0003, a config change of time zone or
allocation nodes, or more new events than facts) rebuilds every row: the figure above, paid once by
the first report. Before the facts, every report recomputed them from the 5.7M task rows: 26-36 s
on SQLite and 15 s on PostgreSQL at this size.
"""
    record_section("report.py", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--runs", type=int, default=3, help="timed runs (with --store: of each command; the median is shown)"
    )
    parser.add_argument("--analyze", action="store_true", help="run ANALYZE on SQLite too (ffctl never does)")
    parser.add_argument("--keep", action="store_true", help="keep the store for profiling (prints its URL)")
    parser.add_argument("--record", action="store_true", help="write the figures to docs/performance.md")
    parser.add_argument(
        "--every",
        action="store_true",
        help="also time every report command as a process, and each after 1%% more orders changed",
    )
    parser.add_argument("--store", help="time the commands over this kept store (a URL) instead of building one")
    parser.add_argument("--only", nargs="*", help="with --store: only the commands whose words contain one of these")
    parser.add_argument(
        "--no-change", action="store_true", help="with --store: skip the runs after 1%% more orders changed"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="with --store: the report alone and the changed orders' history read, against refresh + report",
    )
    parser.add_argument(
        "--recent",
        action="store_true",
        help="change the newest 1%% of orders (as a day's operations would) instead of every 100th",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="with --store: profile refresh_facts after 1%% changed (no-op and real), per statement",
    )
    args = parser.parse_args()
    if args.recent:
        global CHANGE_WHICH
        CHANGE_WHICH = "recent"
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = []
    if args.store:  # a kept store (from --keep): the commands only
        from ffctl.core.config import load_config
        from ffctl.core.kpi import refresh_facts
        from ffctl.core.store import Store

        store, cfg = Store(args.store), load_config(CONFIG)
        store.upgrade()
        start = time.perf_counter()
        print(
            "refresh:",
            refresh_facts(store, cfg, cuts=(None, "week"), now=NOW),
            f"{time.perf_counter() - start:.2f} s",
            flush=True,
        )
        count_all(store.engine)
        count_seconds, _ = count_all(store.engine)
        print(
            f"SELECT count(*) over the {len(TABLES)} tables {count_seconds:.2f} s; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        chosen = [c for c in COMMANDS if not args.only or any(w in " ".join(c) for w in args.only)]
        for cmd in chosen:
            for name, t in time_commands(args.store, [cmd], runs=args.runs).items():
                server = SERVER_CPU[name]
                low, high = SPREAD[name]
                print(
                    f"  ffctl {name:<34} {t:6.2f} s (ratio {t / count_seconds:5.1f}x), CPU {CPU[name]:5.2f} s"
                    + ("" if server is None else f" + server {server:5.2f} s")
                    + (f" (median of {args.runs}; {low:.2f}-{high:.2f} s)" if args.runs > 1 else "")
                    + f", load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        changed = store_orders(store) // 100
        if args.floor:
            for _ in range(args.runs):
                time_floor(store, args.store, cfg, changed)
        if args.profile:
            for real in (False, True):
                profile_refresh(store, args.store, cfg, changed, real=real)
        if not args.no_change:
            # an 'updated' event alone changes no fact: a refresh that writes only what differs makes it
            # almost free, so the real change (change_orders) is timed too
            for real in (False, True):
                for cmd in chosen:
                    for name, t in time_change_all(store, args.store, cfg, changed, [cmd], real=real).items():
                        server = SERVER_CPU["changed " + name]
                        print(
                            f"  after 1% changed ({'real' if real else 'no-op'}): ffctl {name:<26} {t:6.2f} s, "
                            f"CPU {CPU['changed ' + name]:5.2f} s"
                            + ("" if server is None else f", server CPU {server:5.2f} s")
                            + f", load {os.getloadavg()[0]:.1f}",
                            flush=True,
                        )
        return
    for backend in backends:
        r = bench(backend, args.orders, args.runs, args.analyze, args.keep, args.every)
        print(describe(r), flush=True)
        results.append(r)
    if args.record:
        command = "python bench/report.py " + " ".join(a for a in sys.argv[1:] if a != "--record")
        record(results, command.strip())


if __name__ == "__main__":
    main()
