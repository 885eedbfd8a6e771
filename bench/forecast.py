"""Benchmark and score the breach forecast (SPEC 9.4): its quality against the warn_at rule on two
histories, and its speed.

    python bench/forecast.py                      # everything below, SQLite
    python bench/forecast.py --quality-only       # only the backtests of the two histories
    python bench/forecast.py --record             # also write the figures to docs/performance.md

Quality (``sla forecast --backtest`` at threshold 0.5, last 30 days):
- the demo's history (``core.demo.build_demo``, 2,000 orders over 30 days, seed 7);
- a queueing history (``queueing_store``): bursty arrivals (most business hours quiet, some at
  1.5x, one in ten at 3x the mean; 10,000 orders over 30 days) into two nodes served first come first
  served by a few people: ``review`` (3 people) with a quarter more capacity than the mean load,
  ``pack`` (2 people) with just the mean load, so fewer people than its load at every busy time.
Under each, ``bounds``: what the history lets any forecast do at the same steps (a clairvoyant one,
the time waited alone in hindsight, the breach share by queue ahead and by hour of entry).
Speed, SQLite, each the median of --runs, beside a reference measured in the same run:
- ``sla forecast`` over 100,000 open tasks (goal <= 2 s), against reading those tasks;
- the backtest of 30 days x 100,000 orders (goal <= 60 s), against reading the period's tasks;
- ``sla sweep`` with forecast alerts on, 1,000 due among 1M open (bench/sweep.py's store, with
  a history for the node), against the same sweep without them (goal <= 1.2x).
"""

from __future__ import annotations

import argparse
import heapq
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _perfdoc import record_section  # bench/_perfdoc.py (bench/ is on sys.path when run)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

UTC = timezone.utc
START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday

QUEUE_CONFIG = """
[defaults]
timezone = "UTC"
[calendars.office]
timezone = "UTC"
hours = { mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }
[roles.clerk]
members = ["ann", "bob", "cy"]
[roles.packer]
members = ["dan", "eve"]
[workflows.main]
match = {}
nodes = ["review", "pack"]
[nodes.review]
owner = "clerk"
sla = "2h"
calendar = "office"
forecast_alert = 0.7
[nodes.pack]
owner = "packer"
sla = "4h"
calendar = "office"
"""

SERVICE = {"review": (3, 1.25), "pack": (2, 1.0)}  # node -> (people, capacity / mean arrival rate)
BURSTS = ((0.7, 0.7), (0.2, 1.5), (0.1, 3.0))  # (share of business hours, arrival rate x mean)


def stamp(dt: datetime) -> str:
    return dt.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def simulate(orders: int, days: int, seed: int) -> tuple[list, float]:
    """Business-second times of each order's visits: [(arrive, (review_in, review_out), (pack_in,
    pack_out))], and the business seconds the period spans."""
    rng = random.Random(seed)
    hours = days * 9 * 5 // 7
    base = orders / hours  # arrivals per business hour, on average
    arrivals = []
    for h in range(hours):
        u, acc = rng.random(), 0.0
        factor = BURSTS[-1][1]
        for share, f in BURSTS:
            acc += share
            if u < acc:
                factor = f
                break
        n = max(0, round(rng.gauss(base * factor, (base * factor) ** 0.5)))
        arrivals.extend(h * 3600 + rng.random() * 3600 for _ in range(n))
    arrivals.sort()
    arrivals = arrivals[:orders]

    def serve(node: str, times: list[float]) -> list[float]:
        people, spare = SERVICE[node]
        mean = people * 3600 / (base * spare)  # seconds of work per task
        free = [0.0] * people
        out = []
        for t in times:  # first come, first served (one SLA per node: by deadline too)
            start = max(t, heapq.heappop(free))
            done = start + rng.lognormvariate(0, 0.6) * mean / 1.197  # lognormal with that mean
            heapq.heappush(free, done)
            out.append(done)
        return out

    review_out = serve("review", arrivals)
    order = sorted(range(len(arrivals)), key=lambda i: review_out[i])
    pack_out_sorted = serve("pack", [review_out[i] for i in order])
    pack_out = [0.0] * len(arrivals)
    for j, i in enumerate(order):
        pack_out[i] = pack_out_sorted[j]
    return [(a, (a, r), (r, p)) for a, r, p in zip(arrivals, review_out, pack_out)], hours * 3600.0


def queueing_store(folder: Path, orders: int = 10_000, days: int = 30, seed: int = 11) -> tuple[Path, str, datetime]:
    """A store whose history is ``simulate``'s; returns (config, url, now)."""
    from ffctl.core import workflow
    from ffctl.core.config import load_config
    from ffctl.core.store import Store

    config = folder / "ffctl.toml"
    config.write_text(QUEUE_CONFIG, encoding="utf-8")
    cfg = load_config(config)
    path = folder / "queue.db"
    url = f"sqlite:///{path}"
    store = Store(url)
    store.upgrade()
    store.dispose()
    cal = cfg.calendar("review")
    visits, span = simulate(orders, days, seed)
    now = cal.add(START, span)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    order_rows, task_rows = [], []
    for i, (arrive, *stays) in enumerate(visits):
        oid = f"Q{i:07d}"
        created = cal.add(START, arrive)
        order_rows.append((oid, "C1", 0, stamp(created), "open", "main", None, False))
        for seq, (node, (came, left)) in enumerate(zip(("review", "pack"), stays)):
            if came >= span:
                break
            entered = cal.add(START, came)
            risk_at, deadline = workflow.ladder(cfg, node, entered, 0)[:2]
            done = left < span
            task_rows.append(
                (
                    oid,
                    "main",
                    node,
                    seq,
                    "done" if done else "open",
                    cfg.nodes[node].owner,
                    stamp(entered),
                    cfg.nodes[node].sla_seconds,
                    stamp(risk_at),
                    stamp(deadline),
                    "on_track",
                    0.0,
                    0,
                    0,
                    None if done else stamp(risk_at),
                    stamp(cal.add(START, left)) if done else None,
                    "completed" if done else None,
                )
            )
            if not done:
                break
    with conn:
        conn.execute("INSERT INTO customer (customer, name) VALUES ('C1', 'Customer one')")
        conn.executemany(
            "INSERT INTO orders (order_id, customer, priority, created_at, status, workflow, node, "
            "has_custom_items) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            order_rows,
        )
        conn.executemany(
            "INSERT INTO task (order_id, workflow, node, seq, status, owner, entered_at, sla_seconds, "
            "risk_at, deadline, sla_state, paused_seconds, next_step, escalation_level, next_action_at, "
            "completed_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            task_rows,
        )
    conn.execute("ANALYZE")
    conn.close()
    return config, url, now


def backtest(
    config: Path, url: str, now: datetime, *, node: str | None = None, detail: bool = False
) -> tuple[dict, float]:
    from ffctl.core import forecast
    from ffctl.core.config import load_config
    from ffctl.core.store import Store

    cfg = load_config(config)
    store = Store(url)
    try:
        with store.session() as s:
            started = time.perf_counter()
            result = forecast.backtest(
                s, cfg, start=now - timedelta(days=30), end=now, now=now, threshold=0.5, node=node, detail=detail
            )
            return result, time.perf_counter() - started
    finally:
        store.dispose()


def demo_store(folder: Path) -> tuple[Path, str, datetime]:
    from ffctl.core.demo import build_demo

    result = build_demo(folder / "demo", orders=2000, days=30, seed=7, now=datetime(2026, 12, 2, 4, 0, tzinfo=UTC))
    return result.config_path, result.db_url, result.now


def line(name: str, r: dict) -> str:
    def pct(x):
        return "   -" if x is None else f"{x:4.0%}"

    def lead(x):
        return "-" if x is None else f"{x / 60:.0f}m"

    def model(label: str, m: dict) -> str:
        return (
            f" | {label} P {pct(m['precision'])} R {pct(m['recall'])} F1 {pct(m['f1'])} "
            f"lead {lead(m['median_lead_seconds']):>6}"
        )

    exact = model("exact", r["warn_at_exact"]) if "warn_at_exact" in r else ""
    return (
        f"  {name:<14} {r['tasks']:>6} tasks {r['breached']:>5} breached"
        + model("forecast", r["forecast"])
        + model("warn_at", r["warn_at"])
        + exact
    )


def quality(folder: Path, *, demo: bool = True) -> list[str]:
    out = []
    for label, build in (("demo", demo_store), ("queueing", lambda f: queueing_store(f)))[0 if demo else 1 :]:
        sub = folder / label
        sub.mkdir()
        shown = len(out)
        config, url, now = build(sub)
        result, _seconds = backtest(config, url, now, detail=True)
        out.append(f"{label} history, last 30 days, threshold 50%:")
        out.append(line("all nodes", result))
        out.extend(line(n["node"], n) for n in result["nodes"])
        out.append("  what the history lets any forecast do at the same steps (``bounds``):")
        out.extend(bounds(config, url, now, result["warnings"]))
        print("\n".join(out[shown:]), flush=True)
    return out


# --- how early a breach can be foreseen ---------------------------------------------------------------

AHEAD_BINS = ((0, 0, "0"), (1, 2, "1-2"), (3, 5, "3-5"), (6, 10, "6-10"), (11, 30, "11-30"), (31, 10**9, ">30"))


def bounds(config: Path, url: str, now: datetime, warnings: dict | None = None) -> list[str]:
    """What the history lets any forecast do at the backtest's 15-minute steps, beside what it does:

    - ``clairvoyant``: knows every outcome and warns each breach at the first step the replay sees it
      running (precision 100%): the most recall and the longest lead any model can have;
    - ``waited only``: the history estimate alone (``p_history_of``) fed every visit of the period,
      the future's too (hindsight): the best use of how long a task has waited and nothing else;
    - the breach share by the queue ahead at entry and by the local hour of entry: flat means
      neither carries a sign of the outcome a model could read earlier;
    - with ``warnings`` (the backtest's ``detail``): the forecast against the rule on the breaches
      both warned (a diagnostic, not the goal's metric: its lead is over the same tasks).
    Same scored tasks, steps and lead (business time from the warning to the deadline) as the backtest."""
    import zoneinfo
    from bisect import bisect_left, insort
    from types import SimpleNamespace

    from ffctl.core import forecast, workflow
    from ffctl.core.config import load_config
    from ffctl.core.store import Store

    cfg = load_config(config)
    start, step = now - timedelta(days=30), forecast.STEP
    anchor = start - timedelta(seconds=cfg.forecast.window_seconds)
    nodes = list(cfg.nodes)
    store = Store(url)
    try:
        with store.session() as s:
            rows = list(forecast._replayed(s, nodes, since=anchor, end=now))
    finally:
        store.dispose()
    clocks = {n: forecast._Clock(cfg.calendar(n), anchor, now + timedelta(days=2)) for n in nodes}
    zone = zoneinfo.ZoneInfo(cfg.timezone)
    done: dict[str, list] = {n: [] for n in nodes}
    scored, events = [], []
    for r in rows:
        at = clocks[r.node].left
        stop = r.held_at if r.held_at is not None else r.completed_at
        if r.status in forecast.FINISHED and r.completed_at is not None:
            done[r.node].append(max(at(r.completed_at) - at(r.entered_at) - (r.paused_seconds or 0), 0.0))
        if r.entered_at >= start and r.deadline < now and (stop is not None or r.deadline <= now):
            scored.append((r, stop, workflow.is_breached(r.deadline, stop, now)))
        events.append((r.entered_at, 0, r.id, r))
        if stop is not None:
            events.append((stop, 1, r.id, r))
    hindsight = {n: forecast.History(sorted(d), None) for n, d in done.items()}
    ahead: dict[int, int] = {}  # scored task -> running tasks of its queue before it when it entered
    queues: dict[tuple, list] = {}
    wanted = {r.id for r, _stop, _truth in scored}
    for _at, kind, rid, r in sorted(events, key=lambda e: e[:3]):
        q, key = queues.setdefault((r.node, r.owner), []), (r.deadline, r.entered_at, r.id)
        if kind == 0:
            if rid in wanted:
                ahead[rid] = bisect_left(q, key)
            insort(q, key)
        else:
            j = bisect_left(q, key)
            if j < len(q) and q[j] == key:
                del q[j]

    def blank() -> dict:
        return {"tasks": 0, "breached": 0, "seen": [], "hind": [0, 0, []], "ahead": {}, "hour": {}, "both": []}

    acc: dict[str, dict] = {"all nodes": blank()}
    for r, stop, truth in scored:
        at = clocks[r.node].left
        t = start + -((start - r.entered_at) // step) * step  # the replay's first step after entry
        t = t + step if t <= r.entered_at else t
        first, warned = None, None
        while t < r.deadline and (stop is None or stop >= t):
            first = first or t
            waited, left = at(t) - at(r.entered_at) - (r.paused_seconds or 0), at(r.deadline) - at(t)
            if forecast.p_history_of(hindsight[r.node], waited, left) >= 0.5:
                warned = left
                break
            t += step
        both = None
        if warnings and truth and warnings.get(r.id) is not None:
            told = forecast._rule_instant(
                forecast._aware(r.risk_at),
                SimpleNamespace(entered_at=r.entered_at, deadline=r.deadline, stop=stop),
                start,
            )
            if told is not None:
                both = (at(r.deadline) - at(warnings[r.id]), at(r.deadline) - at(told))
        k = next(label for lo, hi, label in AHEAD_BINS if lo <= ahead[r.id] <= hi)
        hour = r.entered_at.astimezone(zone).hour // 3 * 3
        for a in (acc.setdefault(r.node, blank()), acc["all nodes"]):
            a["tasks"] += 1
            a["breached"] += truth
            if truth and first is not None:
                a["seen"].append(at(r.deadline) - at(first))
            if warned is not None:
                a["hind"][0 if truth else 1] += 1
                if truth:
                    a["hind"][2].append(warned)
            if both is not None:
                a["both"].append(both)
            for table, key in ((a["ahead"], k), (a["hour"], hour)):
                cell = table.setdefault(key, [0, 0])
                cell[0] += 1
                cell[1] += truth

    def lead(leads: list) -> str:
        return "-" if not leads else f"{statistics.median(leads) / 60:.0f}m"

    out = []
    for name, a in acc.items():
        tp, fp, leads = a["hind"]
        b = a["breached"] or 1
        p, rc = tp / (tp + fp) if tp + fp else 0.0, tp / b
        f1 = 2 * p * rc / (p + rc) if p + rc else 0.0
        out.append(
            f"  {name:<14} clairvoyant R {len(a['seen']) / b:4.0%} lead {lead(a['seen']):>6}"
            f" | waited only (hindsight) P {p:4.0%} R {rc:4.0%} F1 {f1:4.0%} lead {lead(leads):>6}"
        )
    if warnings is not None:
        out.append("  the breaches both the forecast and warn_at warned (median lead of each):")
        for name, a in acc.items():
            pairs = a["both"]
            if pairs:
                earlier = sum(f > w for f, w in pairs) / len(pairs)
                out.append(
                    f"    {name:<14} {len(pairs):5} breaches | forecast {lead([f for f, _w in pairs]):>6} | warn_at "
                    f"{lead([w for _f, w in pairs]):>6} | forecast earlier on {earlier:4.0%}"
                )
    for title, key, labels in (
        ("breach share by queue ahead at entry", "ahead", [label for *_r, label in AHEAD_BINS]),
        (f"breach share by hour of entry ({cfg.timezone})", "hour", list(range(0, 24, 3))),
    ):
        out.append(f"  {title} (tasks: share):")
        for name, a in acc.items():
            if name != "all nodes":
                cells = [(x, a[key][x]) for x in labels if x in a[key]]
                out.append(
                    f"    {name:<14} "
                    + "  ".join(f"{x if key == 'ahead' else f'{x:02d}h'}: {n} {late / n:.0%}" for x, (n, late) in cells)
                )
    return out


# --- speed -------------------------------------------------------------------------------------------


def open_tasks(url: str, cfg, n: int, now: datetime) -> None:
    """``n`` more open tasks, entered over the last business day (half at review, half at pack)."""
    from ffctl.core import workflow

    path = url.split("///", 1)[1]
    conn = sqlite3.connect(path)
    cal = cfg.calendar("review")
    rows, orders = [], []
    for i in range(n):
        node = ("review", "pack")[i % 2]
        entered = now - timedelta(seconds=60 + (i * 37) % 28_000)
        risk_at, deadline = workflow.ladder(cfg, node, entered, 0)[:2]
        oid = f"OPEN{i:07d}"
        orders.append((oid, "C1", 0, stamp(entered), "open", "main", node, False))
        rows.append(
            (
                oid,
                "main",
                node,
                i % 2,
                "open",
                cfg.nodes[node].owner,
                stamp(entered),
                cfg.nodes[node].sla_seconds,
                stamp(risk_at),
                stamp(deadline),
                "on_track",
                0.0,
                0,
                0,
                stamp(risk_at),
            )
        )
    del cal
    with conn:
        conn.executemany(
            "INSERT INTO orders (order_id, customer, priority, created_at, status, workflow, node, "
            "has_custom_items) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            orders,
        )
        conn.executemany(
            "INSERT INTO task (order_id, workflow, node, seq, status, owner, entered_at, sla_seconds, "
            "risk_at, deadline, sla_state, paused_seconds, next_step, escalation_level, next_action_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    conn.execute("ANALYZE")
    conn.close()


def speed(folder: Path, runs: int) -> list[str]:
    import sqlalchemy as sa

    from ffctl.core import forecast
    from ffctl.core.config import load_config
    from ffctl.core.store import Store

    out = []
    sub = folder / "speed"
    sub.mkdir()
    t = time.perf_counter()
    config, url, now = queueing_store(sub, orders=100_000, days=30, seed=5)
    cfg = load_config(config)
    print(f"  built 100,000 orders over 30 days in {time.perf_counter() - t:.1f} s", flush=True)
    c = time.process_time()
    result, took = backtest(config, url, now)
    took_cpu = time.process_time() - c
    store = Store(url)
    with store.session() as s:
        t = time.perf_counter()
        period = s.execute(
            sa.text("SELECT id, node, entered_at, deadline, completed_at FROM task WHERE entered_at < :e"),
            {"e": stamp(now)},
        ).all()
        read = time.perf_counter() - t
    out.append(
        f"  backtest, 30 days x 100,000 orders ({result['tasks']:,} scored visits)  {took:8.2f} s"
        f"   (goal <= 60 s; CPU {took_cpu:.1f} s; reading its {len(period):,} visits {read:.2f} s: {took / read:.0f}x)"
    )
    print(out[-1], flush=True)
    with store.session() as s:
        opened = s.execute(sa.text("SELECT count(*) FROM task WHERE status = 'open'")).scalar()
    open_tasks(url, cfg, 100_000 - opened, now)
    times, reads, cpu = [], [], []
    for _ in range(runs):
        with store.session() as s:
            t, c = time.perf_counter(), time.process_time()
            rows = forecast.forecast(s, cfg, now, threshold=0)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            t = time.perf_counter()
            s.execute(
                sa.text("SELECT id, order_id, node, owner, entered_at, deadline FROM task WHERE status = 'open'")
            ).all()
            reads.append(time.perf_counter() - t)
    f, r = statistics.median(times), statistics.median(reads)
    out.append(
        f"  sla forecast over {len(rows):,} open tasks             {f:8.2f} s   (goal <= 2 s; reading them "
        f"{r:.2f} s: {f / r:.1f}x; CPU {statistics.median(cpu):.2f} s)"
    )
    print(out[-1], flush=True)
    store.dispose()
    out.extend(sweep_ratio(folder, runs))
    return out


def sweep_ratio(folder: Path, runs: int) -> list[str]:
    """bench/sweep.py's steady store (1,000 due among 1M open review tasks) plus 2,000 completed
    review visits, swept with and without ``forecast_alert`` on review."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sweep_bench", BENCH / "sweep.py")  # bench/sweep.py's store builder
    sweep_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep_bench)

    from ffctl.core.config import load_config
    from ffctl.core.store import Store

    sub = folder / "sweep"
    sub.mkdir()
    path = sub / "sweep.db"
    url = f"sqlite:///{path}"
    store = Store(url)
    store.upgrade()
    t = time.perf_counter()
    sweep_bench.load_sqlite(str(path), 0, 1_000_000)
    conn = sqlite3.connect(path)
    with conn:
        done = []  # ids after bench/sweep.py's "SO..." ones: its reset_due resets order_id < SO00001000
        for i in range(2000):
            entered = sweep_bench.NOW - timedelta(hours=30) + timedelta(seconds=50 * i)
            done.append(
                (
                    f"ZH{i:07d}",
                    "main",
                    "review",
                    0,
                    "done",
                    "clerk",
                    stamp(entered),
                    3600,
                    stamp(entered + timedelta(minutes=45)),
                    stamp(entered + timedelta(hours=1)),
                    "on_track",
                    0.0,
                    0,
                    0,
                    None,
                    stamp(entered + timedelta(minutes=5 + i % 70)),
                    "completed",
                )
            )
        conn.executemany(
            "INSERT INTO orders (order_id, customer, priority, created_at, status, workflow, node, "
            "has_custom_items) VALUES (?, 'C1', 0, ?, 'shipped', 'main', NULL, 0)",
            [(d[0], d[6]) for d in done],
        )
        conn.executemany(
            "INSERT INTO task (order_id, workflow, node, seq, status, owner, entered_at, sla_seconds, "
            "risk_at, deadline, sla_state, paused_seconds, next_step, escalation_level, next_action_at, "
            "completed_at, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            done,
        )
    conn.execute("ANALYZE")
    conn.close()
    print(f"  loaded bench/sweep.py's 1M open tasks and a history in {time.perf_counter() - t:.1f} s", flush=True)
    plain, alerting = sub / "plain.toml", sub / "alerting.toml"
    plain.write_text(sweep_bench.CONFIG, encoding="utf-8")
    alerting.write_text(
        sweep_bench.CONFIG.replace('sla = "1h"', 'sla = "1h"\nforecast_alert = 0.7', 1), encoding="utf-8"
    )
    cfgs = {"without": load_config(plain), "with": load_config(alerting)}
    wall: dict[str, list] = {"without": [], "with": []}
    cpu: dict[str, list] = {"without": [], "with": []}
    for _ in range(runs):  # alternated, so the machine's load weighs on both alike
        for label, cfg in cfgs.items():
            sweep_bench.reset_due(store)
            c = time.process_time()
            wall[label].append(sweep_bench.timed_sweep(store, cfg, expect=sweep_bench.DUE))
            cpu[label].append(time.process_time() - c)
    store.dispose()
    w = {k: statistics.median(v) for k, v in wall.items()}
    c = {k: statistics.median(v) for k, v in cpu.items()}
    out = [
        f"  sweep, 1,000 due among 1M open, forecast alerts on  {w['with'] * 1000:8.1f} ms   "
        f"(without them {w['without'] * 1000:.1f} ms: {w['with'] / w['without']:.2f}x; goal <= 1.2x; CPU "
        f"{c['with'] * 1000:.1f} ms vs {c['without'] * 1000:.1f} ms: {c['with'] / c['without']:.2f}x)"
    ]
    print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quality-only", action="store_true")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument(
        "--queueing-only", action="store_true", help="quality: skip the demo (it takes minutes to build)"
    )
    parser.add_argument("--sweep-only", action="store_true", help="only the sweep with and without forecast alerts")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()
    head = (
        f"`python bench/forecast.py` on CPython {platform.python_version()}, {platform.machine()}, "
        f"{datetime.now(UTC):%Y-%m-%d}, load average {load[0]:.1f} at the start"
    )
    print(head, flush=True)
    with tempfile.TemporaryDirectory(prefix="ffctl-bench-forecast-") as tmp:
        folder = Path(tmp)
        if args.sweep_only:
            lines = sweep_ratio(folder, args.runs)
        else:
            lines = [] if args.speed_only else quality(folder, demo=not args.queueing_only)
            if not args.quality_only:
                lines += ["", "Speed (SQLite):"] + speed(folder, args.runs)
    lines.append(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(lines[-1])
    if args.record and not args.sweep_only:
        record_section(
            "forecast.py",
            "## The breach forecast (`bench/forecast.py`)\n\n" + head + "\n\n```\n" + "\n".join(lines) + "\n```\n",
        )


if __name__ == "__main__":
    main()
