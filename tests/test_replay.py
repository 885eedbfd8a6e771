"""`ffctl sla replay` on both backends: replaying the current config reproduces the recorded SLA
history (breaches always; at-risk warnings and steps where sweeps ran at every due time), a
candidate's figures, rerouted orders, read-only runs, and the refusals."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from helpers import cli_json, cli_ok, import_csv, open_shop

from tests.conftest import Workspace, _pg_admin, require_pg

DAY = "2026-11-23"  # a Monday
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)  # 09:00 in Shanghai: the office opens
END = T0 + timedelta(hours=2)
NOW = "2026-11-23T11:00:00+08:00"  # the replay's clock: the last sweep

CONFIG = """
[defaults]
timezone = "Asia/Shanghai"

[calendars.office]
timezone = "Asia/Shanghai"
hours = { mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }

[roles.reviewer]
members = ["alice"]
escalate_to = "lead"
[roles.lead]
members = ["bob"]
[roles.warehouse]
members = ["grace"]

[workflows.standard]
match = {}
nodes = ["review", "confirm", "allocation"]

[nodes.review]
owner = "reviewer"
sla = "20m"
calendar = "office"
warn_at = 0.5
escalation = [ { after = "0m", action = "remind" }, { after = "15m", action = "escalate" } ]
[nodes.confirm]
owner = "warehouse"
sla = "30m"
calendar = "office"
warn_at = 0.5
escalation = [ { after = "10m", action = "auto_reject", reason = "nobody confirmed" } ]
[nodes.allocation]
sla = "10m"
auto = "allocate"
"""

#: (minute after 09:00, user, command...) -- people act first at a minute, then the sweep runs
ACTIONS = [
    (5, "alice", "order", "hold", "SO-3", "--reason", "customer to confirm the address"),
    (10, "alice", "advance", "SO-1", "--node", "review"),  # exactly at its risk time: no warning
    (10, "alice", "advance", "SO-5", "--node", "review"),
    (12, "alice", "order", "hold", "SO-4", "--reason", "credit check"),  # after its at-risk warning
    (15, "alice", "advance", "SO-6", "--node", "review", "--reject", "--reason", "wrong customer"),  # held there
    (20, "grace", "advance", "SO-5", "--node", "confirm", "--reject", "--reason", "drawing missing"),
    (30, "grace", "advance", "SO-1", "--node", "confirm"),
    (30, "alice", "order", "release", "SO-6"),
    (40, "alice", "order", "release", "SO-4"),
    (44, "alice", "advance", "SO-4", "--node", "review"),
    (45, "alice", "advance", "SO-2", "--node", "review"),  # breached, reminded and escalated
    (50, "alice", "order", "release", "SO-3"),
    (50, "alice", "advance", "SO-5", "--node", "review"),
    (55, "alice", "advance", "SO-6", "--node", "review"),
    (70, "alice", "advance", "SO-3", "--node", "review"),
    (90, "alice", "advance", "SO-2", "--node", "review"),  # back after confirm's auto_reject
    (100, "grace", "advance", "SO-2", "--node", "confirm"),
]


def history(ws: Workspace) -> None:
    """Six orders through review and confirm with holds, rejects (one at the first node, which holds
    the order) and an automatic reject, swept every minute (every due time is a whole minute)."""
    from ffctl.core import sla
    from ffctl.core.config import load_config

    open_shop(ws, now="2026-11-23T08:00:00+08:00")
    rows = "".join(f"SO-{i},1,C-EAST,SKU-0001,1,{DAY} 09:00\n" for i in range(1, 7))
    import_csv(ws, "orders", "order_id,line_no,customer,sku,qty,created_at\n" + rows, now=f"{DAY}T09:00:00+08:00")
    cfg = load_config(ws.config_path)
    store = ws.store()
    try:
        for minute in range(0, int((END - T0).total_seconds() // 60) + 1):
            at = T0 + timedelta(minutes=minute)
            for _minute, user, *args in (a for a in ACTIONS if a[0] == minute):
                cli_ok(ws, *args, now=at.isoformat(), user=user)
            sla.sweep(store, cfg, now=at, rules=False)
    finally:
        store.dispose()


@pytest.fixture
def swept(workspace_with_config) -> Workspace:
    ws = workspace_with_config(CONFIG)
    history(ws)
    return ws


def replay(ws: Workspace, candidate: Path | str, *args: str) -> dict:
    return cli_json(ws, "sla", "replay", candidate, "--from", DAY, "--to", DAY, *args, now=NOW)


def columns_agree(row: dict, a: str, b: str) -> bool:
    return all(row[k][a] == row[k][b] for k in ("breached", "attainment", "late_p90_seconds", "at_risk")) and all(
        m[a] == m[b] for m in row["steps"].values()
    )


def test_replaying_the_current_config_reproduces_a_history_swept_at_every_due_time(swept):
    result = replay(swept, swept.config_path)
    assert result["changes"] == [] and result["changed_path_orders"] == 0
    rows = {r["group"]: r for r in result["rows"]}
    assert list(rows) == ["review", "confirm", "allocation"]
    for row in [*result["rows"], result["totals"]]:
        assert columns_agree(row, "recorded", "current"), json.dumps(row)
        assert columns_agree(row, "current", "candidate"), row
    review, confirm = rows["review"], rows["confirm"]
    # confirm's auto_reject sent SO-2..SO-6 back to review; SO-5 was rejected there by grace too, and
    # SO-6's reject at review (the first node) opened a held visit there
    assert (review["visits"], confirm["visits"], rows["allocation"]["visits"]) == (13, 8, 2)
    # SO-2 (nobody until 09:45), SO-3 (its hold moved the deadline to 10:05; done 10:10), SO-5's and
    # SO-6's second visits (SO-6's: the hold on reject covered 15m), and three visits still open
    assert review["breached"]["current"] == 7
    assert review["steps"]["remind"]["current"] == 7 and review["steps"]["escalate"]["current"] == 2
    assert review["at_risk"]["current"] == 10  # not SO-1: done exactly at its risk time
    assert confirm["steps"]["auto_reject"] == {"recorded": 5, "current": 5, "candidate": 5, "delta": 0}
    assert rows["allocation"]["breached"]["current"] == 2  # still waiting there at the clock
    assert result["totals"]["visits"] == sum(r["visits"] for r in result["rows"])
    assert any("as if a sweep ran at every instant" in a for a in result["assumptions"])


def candidate(ws: Workspace, name: str, *edits: tuple[str, str]) -> Path:
    text = CONFIG
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    return ws.write(name, text)


def test_a_candidate_sla_and_calendar_change_the_figures_beside_the_current_ones(swept):
    path = candidate(
        swept,
        "candidate.toml",
        ('sla = "20m"', 'sla = "40m"'),
        ('fri = "09:00-18:00" }', 'fri = "09:00-18:00" }\nholidays = ["2026-11-23"]'),
    )
    result = replay(swept, path)
    assert result["changes"] == ["calendar office: holiday 2026-11-23 added", "node review: SLA 20m → 40m"]
    rows = {r["group"]: r for r in result["rows"]}
    review, confirm = rows["review"], rows["confirm"]
    # a holiday on the day of the history: the office clocks never run, nothing is late there
    assert review["breached"] == {"recorded": 7, "current": 7, "candidate": 0, "delta": -7}
    assert review["at_risk"]["candidate"] == 0 and review["steps"]["remind"]["candidate"] == 0
    assert confirm["steps"]["auto_reject"]["candidate"] == 0
    assert review["attainment"]["candidate"] == 1.0 and review["attainment"]["delta"] > 0
    assert review["late_p90_seconds"]["candidate"] is None
    assert rows["allocation"]["breached"]["delta"] == 0  # a wall-clock node the change does not touch
    assert result["changed_path_orders"] == 5  # SO-2..SO-6: confirm's auto_reject would not fire
    listed = replay(swept, path, "--orders")["orders"]
    assert listed == [{"order_id": f"SO-{i}", "why": ["confirm: auto_reject would not fire"]} for i in range(2, 7)]


def test_a_longer_sla_alone_moves_breaches_and_steps(swept):
    path = candidate(swept, "longer.toml", ('sla = "20m"', 'sla = "40m"'))
    review = {r["group"]: r for r in replay(swept, path)["rows"]}["review"]
    # SO-2 done 09:45 (deadline 09:40 now), SO-3 done 10:10 (deadline 10:25), SO-6 done 09:55 (10:10)
    assert review["breached"]["candidate"] == 1
    assert review["steps"]["remind"]["candidate"] == 1 and review["steps"]["escalate"]["candidate"] == 0


def test_a_later_automatic_action_still_fires_where_the_clock_reaches_it(swept):
    """Nobody completed the visits confirm's auto_reject ended: with the step 20m later they run on
    until it; SO-3's would come after the clock, so it ends at the recorded time (path changed)."""
    path = candidate(
        swept, "later.toml", ('after = "10m", action = "auto_reject"', 'after = "30m", action = "auto_reject"')
    )
    result = replay(swept, path, "--orders")
    confirm = {r["group"]: r for r in result["rows"]}["confirm"]
    assert confirm["steps"]["auto_reject"]["candidate"] == 4
    assert confirm["late_p90_seconds"]["candidate"] > confirm["late_p90_seconds"]["current"]
    assert result["orders"] == [{"order_id": "SO-3", "why": ["confirm: auto_reject would not fire"]}]


def test_rerouting_by_match_is_counted_not_simulated(swept):
    path = candidate(
        swept,
        "pilot.toml",
        (
            "[workflows.standard]",
            '[workflows.pilot]\nmatch = { region = ["east"] }\nnodes = ["review", "allocation"]\n[workflows.standard]',
        ),
    )
    result = replay(swept, path, "--orders")
    assert result["changes"] == ["workflow pilot: added"]
    assert result["changed_path_orders"] == 6
    assert result["orders"][0]["why"] == [
        "routed standard (review > confirm > allocation) → pilot (review > allocation)"
    ]
    assert all(columns_agree(r, "current", "candidate") for r in result["rows"])


def test_by_role_and_by_workflow(swept):
    path = candidate(swept, "owner.toml", ('owner = "warehouse"\nsla = "30m"', 'owner = "lead"\nsla = "30m"'))
    result = replay(swept, path, "--by", "role")
    rows = {r["group"]: r for r in result["rows"]}
    assert rows["warehouse"]["visits"] == 8 and rows["warehouse"]["visits_candidate"] == 0
    assert rows["lead"]["visits"] == 0 and rows["lead"]["visits_candidate"] == 8
    assert rows["lead"]["steps"]["auto_reject"]["candidate"] == 5
    assert rows[None]["visits"] == 2  # allocation has no owner
    assert result["changes"] == ["node confirm: owner warehouse → lead"]
    by_workflow = replay(swept, swept.config_path, "--by", "workflow")
    assert [r["group"] for r in by_workflow["rows"]] == ["standard"]
    table = cli_ok(swept, "sla", "replay", path, "--from", DAY, "--to", DAY, "--by", "role", "-f", "table", now=NOW)
    assert "Assumptions:" in table.stdout and "node confirm: owner warehouse → lead" in table.stdout
    assert "escalations" in table.stdout and "total" in table.stdout


def test_bad_input_is_told_plainly(swept):
    broken = swept.write("broken.toml", CONFIG.replace('sla = "20m"', 'sla = "twenty"'))
    r = swept.run("sla", "replay", broken, now=NOW)
    assert r.exit_code == 2 and "broken.toml" in r.stderr and "nodes.review.sla" in r.stderr, r.stderr
    r = swept.run("sla", "replay", swept.config_path, "--from", "2026-11-24", "--to", "2026-11-20", now=NOW)
    assert r.exit_code == 2 and "is not after --from" in r.stderr, r.stderr
    r = swept.run("sla", "replay", swept.config_path, "--from", "2026-10-01", "--to", "2026-10-31", now=NOW)
    assert r.exit_code == 1, r.output
    assert "no node visit entered between 2026-10-01 00:00+08:00 and 2026-11-01 00:00+08:00" in r.stderr
    assert "The store's visits entered from 2026-11-23 09:00+08:00" in r.stderr
    r = swept.run("sla", "replay", swept.config_path, "--by", "customer", now=NOW)
    assert r.exit_code == 2 and "--by" in r.stderr
    r = swept.run("sla", "replay", swept.path / "missing.toml", now=NOW)
    assert r.exit_code == 2 and "missing.toml" in r.stderr
    assert "Traceback" not in r.stderr


# --- read-only ---------------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_replay_writes_nothing(swept, backend):
    path = candidate(swept, "candidate.toml", ('sla = "20m"', 'sla = "40m"'))
    if backend == "sqlite":
        db = Path(swept.db_url.split("///", 1)[1])
        with sqlite3.connect(db) as conn:  # fold the WAL into the file, so the file is the whole store
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = _digest(db)
        wal = db.with_name(db.name + "-wal")
        wal_before = wal.read_bytes() if wal.exists() else b""
        replay(swept, path, "--orders")
        assert _digest(db) == before
        assert (wal.read_bytes() if wal.exists() else b"") == wal_before
        return
    require_pg()
    owner_url = swept.db_url
    database = owner_url.rsplit("/", 1)[1]
    role = f"ffctl_ro_{uuid.uuid4().hex[:8]}"
    # a role that can read and nothing else, in a session that takes no writes (a standby's view)
    for sql in (
        f"CREATE ROLE {role} LOGIN",
        f"GRANT CONNECT ON DATABASE {database} TO {role}",
        f"ALTER ROLE {role} SET default_transaction_read_only = on",
    ):
        _pg_admin(sql)
    import psycopg

    with psycopg.connect(owner_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    try:
        expected = replay(swept, path, "--orders")
        reader = Workspace(
            path=swept.path,
            db_url=owner_url.replace("postgresql+psycopg://root@", f"postgresql+psycopg://{role}@"),
            config_path=swept.config_path,
        )
        assert replay(reader, path, "--orders") == expected
        r = reader.run("order", "hold", "SO-1", "--reason", "x", now=NOW)
        assert r.exit_code == 1 and ("read-only" in r.stderr or "permission denied" in r.stderr), r.stderr
    finally:
        with psycopg.connect(owner_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
        _pg_admin(f"DROP OWNED BY {role}")
        _pg_admin(f"DROP ROLE IF EXISTS {role}")


# --- the demo's history --------------------------------------------------------------------------


def test_replaying_the_current_config_over_the_demo_reproduces_its_breaches(tmp_path, db_url):
    """Sweeps ran hourly in the demo: breaches match exactly, and what the sweeps fired is always
    among what the replay fires (the rest is the sweep cadence), visit by visit."""
    from ffctl.core import replay as replay_core
    from ffctl.core.config import load_config
    from ffctl.core.demo import build_demo
    from ffctl.core.store import Store

    end = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)

    result = build_demo(tmp_path / "demo", orders=60, days=3, now=end, db_url=db_url)
    ws = Workspace(path=result.directory, db_url=db_url, config_path=result.config_path)
    now = end.isoformat()
    replayed = cli_json(ws, "sla", "replay", result.config_path, "--from", "2026-11-20", now=now)
    assert (
        replayed["totals"]["breached"]["recorded"]
        == replayed["totals"]["breached"]["current"]
        == result.counts["breaches"]
    )
    for row in [*replayed["rows"], replayed["totals"]]:
        assert row["breached"]["recorded"] == row["breached"]["current"], row
        assert row["at_risk"]["recorded"] <= row["at_risk"]["current"], row
        for action, m in row["steps"].items():
            assert m["recorded"] <= m["current"], (row["group"], action, m)
    cfg = load_config(result.config_path)
    store = Store(db_url)
    try:
        with store.session() as s:
            period = replay_core.Period(end - timedelta(days=10), end)
            checked = 0
            for batch in replay_core.visits(s, period, chunk=50):
                for v in batch:
                    was = replay_core.recorded(cfg, v, end)
                    cur = replay_core.evaluate(cfg, v, end)
                    assert was.breached == cur.breached, v
                    assert not was.at_risk or cur.at_risk, v
                    fired = list(cur.steps)
                    for action in was.steps:  # every recorded step is one the replay fires
                        assert action in fired, (v, was.steps, cur.steps)
                        fired.remove(action)
                    checked += 1
            assert checked == replayed["totals"]["visits"]
    finally:
        store.dispose()


# --- the visits counted in SQL against the scalar clock -------------------------------------------

#: candidates touching every input of the SQL classification: SLA, warn_at, calendar hours and
#: holidays, escalation timing, a wall-clock node given a calendar
CANDIDATES = [
    (('sla = "20m"', 'sla = "40m"'),),
    (('warn_at = 0.5\nescalation = [ { after = "0m"', 'warn_at = 0.9\nescalation = [ { after = "0m"'),),
    (('mon = "09:00-18:00"', 'mon = ["09:10-09:40", "09:50-18:00"]'),),
    (('fri = "09:00-18:00" }', 'fri = "09:00-18:00" }\nholidays = ["2026-11-23"]'),),
    (('after = "10m", action = "auto_reject"', 'after = "1m", action = "auto_reject"'),),
    (('sla = "10m"\nauto = "allocate"', 'sla = "10m"\ncalendar = "office"\nauto = "allocate"'),),
]


@pytest.mark.parametrize("facts", [False, True], ids=["tasks", "facts"])
def test_the_visits_counted_in_sql_equal_the_scalar_clock_on_every_candidate(swept, facts):
    """``replay`` counts quiet visits in SQL and levels the clear ones there, or (the report facts
    current) counts them from visit_fact's stored elapsed business time; the scalar path (every
    visit through ``evaluate``) must give the same figures, to the orders listed."""
    from ffctl.core import kpi
    from ffctl.core import replay as replay_core
    from ffctl.core.config import load_config, parse_config

    cfg = load_config(swept.config_path)
    now = datetime.fromisoformat(NOW)
    period = replay_core.Period(T0 - timedelta(hours=1), now)
    store = swept.store()
    try:
        if facts:
            kpi.refresh_facts(store, cfg, now=now)
        with store.session() as s:
            assert kpi.facts_current(s, cfg) is facts
            assert (replay_core._plan(s, replay_core.Replay(cfg, cfg, now=now)) is not None) is facts
        for edits in [(), *CANDIDATES]:
            text = CONFIG
            for old, new in edits:
                assert old in text, old
                text = text.replace(old, new)
            cand = parse_config(text, "candidate.toml")
            for by in ("node", "role"):
                with store.session() as s:
                    fast = replay_core.replay(s, cfg, cand, period=period, now=now, by=by, list_orders=True)
                    rep = replay_core.Replay(cfg, cand, now=now, by=by)
                    for batch in replay_core.visits(s, period):
                        rep.add(batch)
                    rep.reroute(s)
                    scalar = rep.result(period, [], list_orders=True)
                assert fast == scalar, (edits, by)
    finally:
        store.dispose()
