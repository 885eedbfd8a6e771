"""Benchmark `ffctl sla replay` over a million node visits against `report sla` in the same run.

    python bench/replay.py                          # ~1M visits (200,000 orders), SQLite
    python bench/replay.py --orders 40000 --backend both
    python bench/replay.py --record                 # also write the figures to docs/performance.md
    python bench/replay.py --store /work/stores/NAME/r200k.db   # SQLite: keep the store, reuse it next time

The store is the one bench/report.py builds in SQL (a year of orders through the example config's
workflows, one task per node visit with its deadline). The candidate changes one node's SLA
(wave_pick 2h -> 3h) and one calendar (office: a holiday and shorter Friday hours, which
credit_review counts in). Timed in the same run, over the same period: `replay.replay` (the core
call) against `kpi.sla_report` (the core of `report sla`); then both whole CLI processes, with the
replay process's peak RSS. Goals: replay <= 3x report sla, <= 20 s on SQLite, peak RSS <= 500 MB.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path

from _perfdoc import record_section  # bench/_perfdoc.py (bench/ is on sys.path when run)
from report import CONFIG, NOW, Dialect, build, scratch_store  # the store bench/report.py builds

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def candidate_text() -> str:
    text = CONFIG.read_text(encoding="utf-8")
    edits = [
        (
            'holidays = ["2026-10-01", "2026-10-02", "2026-10-05"]',
            'holidays = ["2025-05-01", "2025-10-01", "2026-10-01", "2026-10-02", "2026-10-05"]',
        ),
        ('sla = "2h"', 'sla = "3h"'),
    ]
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def rss_of(command: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one process. The peak is the child's own VmHWM, polled:
    a forked child's rusage would carry this (bigger) process's high-water mark."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed: {proc.stderr.read().decode()}")
    return elapsed, peak / 1024


def timed(fn):
    """(wall seconds, CPU seconds of this process, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


@contextmanager
def kept_store(path: Path, n: int):
    """A SQLite store kept at ``path`` across runs: built (n orders) the first time, reused after."""
    from ffctl.core.store import Store

    url = f"sqlite:///{path}"
    fresh = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    store = Store(url)
    try:
        store.upgrade()
        if fresh:
            with store.engine.begin() as conn:
                build(conn, n, Dialect(True))
        yield store, url
    finally:
        store.dispose()


def bench(backend: str, n: int, keep: Path | None = None) -> dict:
    from ffctl.core import configdiff, kpi, replay
    from ffctl.core.config import load_config, parse_config

    cfg = load_config(CONFIG)
    tmp = Path(tempfile.mkdtemp(prefix="ffctl-bench-replay-"))
    cand_path = tmp / "candidate.toml"
    cand_path.write_text(candidate_text(), encoding="utf-8")
    cand = parse_config(candidate_text(), str(cand_path))
    start = time.perf_counter()
    stores = kept_store(keep, n) if keep and backend == "sqlite" else scratch_store(backend, tmp)
    with stores as (store, url):
        if not keep or backend != "sqlite":
            with store.engine.begin() as conn:
                build(conn, n, Dialect(store.is_sqlite))
        if not store.is_sqlite:  # as bench/report.py: what autovacuum would do soon after a bulk load
            with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        built = time.perf_counter() - start
        period = replay.Period(START, NOW)
        changes = [c["text"] for c in configdiff.diff(cfg, cand)]
        exe = shutil.which("ffctl", path=str(Path(sys.executable).parent)) or shutil.which("ffctl")
        env = dict(os.environ, FFCTL_CONFIG=str(CONFIG), FFCTL_DB=url, FFCTL_NOW=NOW.isoformat())
        dates = ["--from", START.date().isoformat(), "--to", NOW.date().isoformat(), "--format", "json"]
        report_cli, report_rss = rss_of([exe, "report", "sla", *dates], env)
        replay_cli, replay_rss = rss_of([exe, "sla", "replay", str(cand_path), *dates], env)

        def report_core():
            with store.session() as s:
                return kpi.sla_report(s, cfg, now=NOW, period=kpi.Period(START, NOW))

        def replay_core():
            with store.session() as s:
                return replay.replay(s, cfg, cand, period=period, now=NOW, changes=changes)

        report_s, report_cpu, sla_rows = timed(report_core)
        replay_s, replay_cpu, result = timed(replay_core)
        if keep and backend == "sqlite":
            shutil.rmtree(tmp, ignore_errors=True)
        return {
            "backend": backend,
            "orders": n,
            "built": built,
            "visits": result["totals"]["visits"],
            "report": report_s,
            "replay": replay_s,
            "report_cpu": report_cpu,
            "replay_cpu": replay_cpu,
            "replay_cli": replay_cli,
            "report_cli": report_cli,
            "replay_rss": replay_rss,
            "report_rss": report_rss,
            "changes": changes,
            "breaches": sum(r["breaches"] for r in sla_rows),
            "totals": result["totals"],
            "load": os.getloadavg(),
        }


def describe(r: dict) -> str:
    t = r["totals"]
    return (
        f"{r['backend']}: {r['orders']:,} orders built in {r['built']:.0f} s; {r['visits']:,} node visits in the period\n"
        f"  report sla (core)                          {r['report']:6.2f} s   CPU {r['report_cpu']:6.2f} s (client)\n"
        f"  sla replay (core)                          {r['replay']:6.2f} s   CPU {r['replay_cpu']:6.2f} s"
        f"   {r['replay'] / r['report']:4.1f}x report sla   {r['replay_cpu'] / r['visits'] * 1e6:5.1f} us CPU/visit\n"
        f"  ffctl report sla (process)                 {r['report_cli']:6.2f} s   peak RSS {r['report_rss']:5.0f} MB\n"
        f"  ffctl sla replay (process)                 {r['replay_cli']:6.2f} s   peak RSS {r['replay_rss']:5.0f} MB"
        f"   {r['replay_cli'] / r['report_cli']:4.1f}x report sla\n"
        f"  breaches: report sla {r['breaches']:,}; replay recorded {t['breached']['recorded']:,}, current "
        f"{t['breached']['current']:,}, candidate {t['breached']['candidate']:,}\n"
        f"  load average {r['load'][0]:.1f} / {r['load'][1]:.1f} / {r['load'][2]:.1f}"
    )


def verdict(r: dict) -> str:
    ratio, ratio_cli = r["replay"] / r["report"], r["replay_cli"] / r["report_cli"]
    fastest = min(r["replay"], r["replay_cli"])
    return (
        f"Goals ({r['backend']}, {r['visits']:,} visits): replay <= 3x report sla: "
        f"{'met' if max(ratio, ratio_cli) <= 3 else 'not met'} ({ratio:.1f}x core, {ratio_cli:.1f}x process); "
        f"<= 20 s: {'met' if fastest <= 20 else 'not met in wall time'} ({fastest:.0f} s wall at load average "
        f"{r['load'][0]:.0f} on 2 shared cores; {r['replay_cpu']:.1f} s of CPU); peak RSS <= 500 MB: "
        f"{'met' if r['replay_rss'] <= 500 else 'not met'} ({r['replay_rss']:.0f} MB)."
    )


def record(results: list[dict], command: str) -> None:
    body = "\n\n".join(describe(r) for r in results)
    verdicts = "\n\n".join(verdict(r) for r in results)
    changes = "; ".join(results[0]["changes"])
    section = f"""## SLA replay (`bench/replay.py`)

`{command}` on CPython {platform.python_version()}, {platform.machine()}, {date.today().isoformat()}; 2 cores shared
with other jobs (load averages in the figures). The store bench/report.py builds (a year of orders,
one task per node visit with its deadline); the candidate: {changes}. Timed in the same run over
the same period: `kpi.sla_report` (the core of `report sla`) and `replay.replay` (the core of
`sla replay`), then both whole processes with their peak RSS.

```
{body}
```

{verdicts}

The recorded breaches are `report sla`'s exactly; the current column differs here only because
bench/report.py writes each deadline as entered_at + SLA in wall-clock time, where ffctl counts the
office and warehouse calendars: replaying the current config recomputes them as the sweep would.
(On histories ffctl wrote, tests/test_replay.py checks that the recorded and current columns agree.)

How: when the report facts are current (`report sla` just refreshed them; `kpi.facts_current`),
the visits are counted from visit_fact, which keeps each visit's elapsed business time E (entered
to stopped in its node's calendar, less holds, counted at refresh by `kpi._BusinessTime`). A
candidate calendar that differs from the current one on a few UTC days (`utc_days` compared day by
day) changes E only for the visits touching those days; those, and the nodes whose clock changes
more, go the way below. `add` is the first instant E reaches a ladder time's seconds
(`workflow.ladder_seconds`), so a ladder time has passed exactly when E exceeds them: the visits
without holds or automatic outcome whose E is more than a second from every ladder time are counted
by ranges of E through visit_fact's (node, breached, auto, paused, elapsed) index, one level per
range and config (`replay.at_level`); a breach is late by E less the SLA. Only the breached visits'
E come back (and, for the recorded column, the stored deadline, counted by the scalar clock), and
the ids of the others (running, held, automatic, within a second of a ladder time, on a changed
day), which the sweep's ladder evaluates whole. Otherwise (facts behind the audit trail): one
set-based query counts E in the calendar's own table of business time (`BusinessCalendar.utc_days`,
joined per UTC day as `report sla`'s lateness does) and classes the visits the same way; quiet
visits are only counted, per node and workflow, the others come back by id.
"""
    record_section("replay.py", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument(
        "--store",
        type=Path,
        help="SQLite: keep the store in this file and reuse it in later runs (built with --orders the first time)",
    )
    parser.add_argument("--record", action="store_true", help="write the figures to docs/performance.md")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = []
    for backend in backends:
        r = bench(backend, args.orders, args.store)
        print(describe(r), flush=True)
        results.append(r)
    if args.record:
        command = "python bench/replay.py " + " ".join(a for a in sys.argv[1:] if a != "--record")
        record(results, command.strip())


if __name__ == "__main__":
    main()
