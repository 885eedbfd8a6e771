"""The breach forecast (SPEC 9.4) on both backends: figures with reasons, the queue's order, too
little history, the task list's column, the backtest without leakage, the sweep's alert."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import FORECAST_CONFIG, cli_json, cli_ok, complete_order_task, enter_orders, review_history

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
#: review visits of the past: mostly within the 1h SLA, one in six late
TOOK = [10, 20, 30, 40, 50, 70] * 5


@pytest.fixture
def ws(workspace_with_config):
    return workspace_with_config(FORECAST_CONFIG)


@pytest.fixture
def cfg(ws):
    from ffctl.core.config import load_config

    return load_config(ws.config_path)


def queue(ws, cfg, n: int, *, at: datetime = NOW - timedelta(minutes=10)) -> list[str]:
    """n review tasks in a queue: entered a second apart, the first one first."""
    ids = []
    for i in range(n):
        oid = f"Q-{i:03d}"
        enter_orders(ws.store(), cfg, [oid], at + timedelta(seconds=i))
        ids.append(oid)
    return ids


def test_every_open_task_gets_a_probability_and_a_reason_and_the_queue_orders_them(ws, cfg):
    review_history(ws.store(), cfg, NOW - timedelta(hours=40), TOOK)
    ids = queue(ws, cfg, 8)
    rows = cli_json(ws, "sla", "forecast", "--node", "review", "--threshold", "0", now=NOW.isoformat())
    ps = [r["p_breach"] for r in rows]
    assert ps == sorted(ps, reverse=True)  # most likely first
    by_place = sorted(rows, key=lambda r: r["ahead"])
    assert [r["order_id"] for r in by_place] == ids and [r["ahead"] for r in by_place] == list(range(8))
    ps = [r["p_breach"] for r in by_place]
    assert ps == sorted(ps) and ps[0] < 0.5 < 0.9 < ps[-1]  # the further back, the likelier
    for r in rows:
        assert 0 <= r["p_breach"] <= 1
        assert f"{r['ahead']} ahead, " in r["reason"] and "done per business hour" in r["reason"]
        assert "of SLA left" in r["reason"] and "of the last 30 visits" in r["reason"]
    table = cli_ok(ws, "sla", "forecast", "--node", "review", "--format", "table", now=NOW.isoformat()).stdout
    assert "Q-007" in table and "Q-000" not in table  # the front of the queue is below 50%


def test_a_queue_this_node_has_always_cleared_in_time_weighs_little(ws, cfg):
    review_history(ws.store(), cfg, NOW - timedelta(hours=60), TOOK)
    burst = NOW - timedelta(hours=20)  # ten visits at once, each done within the hour: queues never made it late
    for i in range(10):
        enter_orders(ws.store(), cfg, [f"B-{i:02d}"], burst + timedelta(seconds=i))
    for i in range(10):
        complete_order_task(ws.store(), cfg, f"B-{i:02d}", burst + timedelta(minutes=10 + 5 * i))
    queue(ws, cfg, 8)
    rows = cli_json(ws, "sla", "forecast", "--node", "review", "--threshold", "0", now=NOW.isoformat())
    by_place = sorted(rows, key=lambda r: r["ahead"])
    assert max(r["p_breach"] for r in rows) < 0.5  # 7 ahead, yet not called late: such queues were cleared
    back = by_place[-1]["reason"]
    assert "came in behind a queue this node could not clear in time, 0 ran late" in back, back


def test_too_little_history_says_so_instead_of_guessing(ws, cfg):
    # 5 reviews: each order now at pack, which has no history
    review_history(ws.store(), cfg, NOW - timedelta(hours=1), TOOK[:5], gap=timedelta(minutes=1))
    rows = cli_json(ws, "sla", "forecast", "--threshold", "0", now=NOW.isoformat())
    assert len(rows) == 5
    for r in rows:
        assert r["p_breach"] is None
        assert r["reason"] == "fewer than 20 completed visits in the last 30d (has 0)"
    assert cli_json(ws, "sla", "forecast", now=NOW.isoformat()) == []  # none reaches the threshold


def test_a_task_past_its_deadline_is_certain(ws, cfg):
    review_history(ws.store(), cfg, NOW - timedelta(hours=40), TOOK)
    enter_orders(ws.store(), cfg, ["LATE"], NOW - timedelta(hours=2))
    (row,) = [
        r for r in cli_json(ws, "sla", "forecast", "--role", "clerk", now=NOW.isoformat()) if r["order_id"] == "LATE"
    ]
    assert row["p_breach"] == 1 and row["reason"] == "past its deadline by 1h"


def test_task_list_shows_p_breach(ws, cfg):
    review_history(ws.store(), cfg, NOW - timedelta(hours=40), TOOK)
    queue(ws, cfg, 3)
    rows = cli_json(ws, "task", "list", "--role", "clerk", now=NOW.isoformat())
    assert [r["order_id"] for r in rows] == ["Q-000", "Q-001", "Q-002"]
    assert all(0 <= r["p_breach"] <= 1 and "ahead" in r["p_breach_reason"] for r in rows)
    packs = cli_json(ws, "task", "list", "--role", "lead", now=NOW.isoformat())
    assert packs and all(
        r["p_breach"] == 1 and r["p_breach_reason"].startswith("past its deadline by ")
        for r in packs
        if r["state"] == "breached"
    )
    table = cli_ok(ws, "task", "list", "--role", "clerk", "--format", "table", now=NOW.isoformat()).stdout
    assert "p(breach)" in table


def test_forecast_refuses_unknown_names_and_mixed_options(ws):
    r = ws.run("sla", "forecast", "--node", "nope", now=NOW.isoformat())
    assert r.exit_code == 2 and "no such node" in r.stderr
    r = ws.run("sla", "forecast", "--from", "2026-03-01", now=NOW.isoformat())
    assert r.exit_code == 2 and "--backtest" in r.stderr


# --- the backtest ------------------------------------------------------------------------------------


def period_orders(ws, cfg, start: datetime, hours: int, *, prefix: str) -> None:
    """A review order every 20 minutes from ``start``; each takes 10-80 minutes (a few run late)."""
    for i in range(hours * 3):
        oid = f"{prefix}-{i:04d}"
        at = start + timedelta(minutes=20 * i)
        enter_orders(ws.store(), cfg, [oid], at)
        complete_order_task(ws.store(), cfg, oid, at + timedelta(minutes=[10, 25, 40, 55, 80][i % 5]))


def test_backtest_never_learns_from_the_future(ws, cfg):
    from ffctl.core import forecast

    start = NOW - timedelta(days=3)
    review_history(ws.store(), cfg, start - timedelta(hours=30), TOOK)
    period_orders(ws, cfg, start, 30, prefix="P")
    planted = start + timedelta(hours=10)  # outliers enter just before this instant, finish 3h later

    def run():
        with ws.store().session() as s:
            return forecast.backtest(s, cfg, start=start, end=start + timedelta(hours=40), now=NOW, detail=True)

    before = run()
    for i in range(15):
        oid = f"OUT-{i:02d}"
        enter_orders(ws.store(), cfg, [oid], planted - timedelta(minutes=1))
        complete_order_task(ws.store(), cfg, oid, planted + timedelta(hours=3))
    after = run()

    def warned_by_then(result):  # the tasks of the first run (the outliers are scored tasks too)
        return {k: v for k, v in result["warnings"].items() if k in before["warnings"] and v and v <= planted}

    assert warned_by_then(before) and warned_by_then(before) == warned_by_then(after)
    later = [k for k, v in before["warnings"].items() if after["warnings"].get(k) != v]
    assert later, "the outliers should change predictions once they have completed"
    assert before["forecast"]["f1"] is not None and before["warn_at"]["recall"] == 1.0


def test_backtest_cli_prints_both_figures(ws, cfg):
    start = NOW - timedelta(days=2)
    review_history(ws.store(), cfg, start - timedelta(hours=30), TOOK)
    period_orders(ws, cfg, start, 20, prefix="P")
    frm, to = start.isoformat(), (start + timedelta(hours=24)).isoformat()
    out = cli_json(
        ws, "sla", "forecast", "--backtest", "--node", "review", "--from", frm, "--to", to, now=NOW.isoformat()
    )
    assert out["tasks"] == 60 and out["breached"] == 12  # the 80-minute fifth of them
    for name in ("forecast", "warn_at"):
        figures = out[name]
        assert set(figures) >= {"precision", "recall", "f1", "median_lead_seconds"}
    assert out["warn_at"]["precision"] == 0.5  # 55 and 80 minutes are open at 45 minutes
    table = cli_ok(
        ws, "sla", "forecast", "--backtest", "--from", frm, "--to", to, "--format", "table", now=NOW.isoformat()
    ).stdout
    assert "warn_at rule" in table and "median lead" in table and "review" in table


# --- the model alone ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 1e5), min_size=1, max_size=50),
    st.floats(0, 1e5),
    st.floats(-1e4, 1e5),
    st.integers(0, 500),
    st.one_of(st.none(), st.floats(1e-6, 1)),
)
def test_probabilities_stay_in_0_1_and_grow_with_the_queue(durations, waited, left, ahead, pace):
    from ffctl.core.forecast import History, probability

    history = History(sorted(durations), pace)
    p, p_history, p_queue = probability(history, waited, left, ahead)
    assert 0 <= p_history <= 1 and 0 <= p_queue <= 1 and p == max(p_history, p_queue)
    assert probability(history, waited, left, ahead + 1)[0] >= p


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0, 1e5), min_size=1, max_size=50),
    st.floats(-1e4, 1e5),
    st.floats(-1e4, 1e5),
    st.integers(0, 500),
    st.one_of(st.none(), st.floats(1e-6, 1)),
    st.integers(0, 20),
    st.integers(0, 20),
    st.floats(0.01, 1),
)
def test_the_backtests_shortcuts_decide_as_the_model_does(
    durations, waited, left, ahead, pace, queued, late, threshold
):
    from ffctl.core.forecast import History, probability, queue_late, queue_warns, reaches

    history = History(sorted(durations), pace, queued + late, late)
    assert queue_warns(ahead, pace, left) == (queue_late(ahead, pace, left) >= 0.5)
    assert reaches(history, waited, left, ahead, threshold) == (
        probability(history, waited, left, ahead)[0] >= threshold
    )


# --- the sweep's alert -------------------------------------------------------------------------------

ALERTING = FORECAST_CONFIG.replace("[nodes.pack]", "forecast_alert = 0.7\n[nodes.pack]")


def test_the_sweep_alerts_once_per_task_before_it_is_at_risk(workspace_with_config):
    from ffctl.core.config import load_config

    ws = workspace_with_config(ALERTING)
    cfg = load_config(ws.config_path)
    review_history(ws.store(), cfg, NOW - timedelta(hours=40), TOOK)
    cli_ok(ws, "sla", "sweep", "--no-send", now=(NOW - timedelta(minutes=11)).isoformat())  # the history's steps
    ids = queue(ws, cfg, 6)
    first = cli_json(ws, "sla", "sweep", "--no-send", now=NOW.isoformat())
    expected = {
        r["order_id"]
        for r in cli_json(ws, "sla", "forecast", "--node", "review", "--threshold", "0.7", now=NOW.isoformat())
    }
    assert expected and expected < set(ids) and "Q-000" not in expected
    assert first["forecast_alerts"] == len(expected)
    assert {i["order_id"] for i in first["items"] if i["what"] == "forecast"} == expected
    again = cli_json(ws, "sla", "sweep", "--no-send", now=(NOW + timedelta(minutes=5)).isoformat())
    assert again["forecast_alerts"] == 0  # once per task
    timeline = cli_json(ws, "order", "show", sorted(expected)[0], now=(NOW + timedelta(minutes=5)).isoformat())
    told = [e for e in timeline["timeline"] if e["event"] == "forecast"]
    assert len(told) == 1 and "likely to breach" in told[0]["detail"] and "told clerk" in told[0]["detail"]
    notes = cli_json(ws, "notify", "list", now=(NOW + timedelta(minutes=5)).isoformat())
    digests = [n for n in notes if n["recipient"] == "ann" and "likely to breach" in json.dumps(n, ensure_ascii=False)]
    assert len(digests) == 1, notes  # one message to ann lists every alerted order
    assert all(oid in json.dumps(digests[0]) for oid in expected)


def test_schema_0008_upgrades_and_downgrades(ws, cfg):
    import sqlalchemy as sa
    from alembic import command

    review_history(ws.store(), cfg, NOW - timedelta(hours=40), TOOK)
    store = ws.store()
    try:

        def indexes():
            with store.session() as s:
                return {i["name"]: i["column_names"] for i in sa.inspect(s.connection()).get_indexes("task")}

        assert indexes()["ix_task_finished"] == ["node", "completed_at"]
        assert indexes()["ix_task_node"] == ["node", "entered_at"]
        command.downgrade(store._alembic_config(), "0005")
        assert "ix_task_finished" not in indexes() and indexes()["ix_task_node"] == ["node"]
        store.upgrade()
        assert (
            indexes()["ix_task_finished"] == ["node", "completed_at"]
            and store.current_revision() == store.head_revision()
        )
        rows = cli_json(ws, "sla", "forecast", "--node", "review", "--threshold", "0", now=NOW.isoformat())
        assert rows == []  # the history reads the same; no review task is open
    finally:
        store.dispose()


def test_config_check_names_a_bad_forecast_setting(tmp_path):
    from ffctl.core.config import parse_config
    from ffctl.core.errors import FfctlError

    text = FORECAST_CONFIG.replace('sla = "1h"\n', 'sla = "1h"\nforecast_alert = 1.5\n', 1)
    text = text.replace("min_history = 20", "min_history = 0").replace('window = "30d"', 'window = "soon"')
    with pytest.raises(FfctlError) as caught:
        parse_config(text)
    said = str(caught.value) + " ".join(str(p) for p in getattr(caught.value, "problems", []))
    assert "nodes.review.forecast_alert" in said and "forecast.min_history" in said and "forecast.window" in said


def test_dashboard_lists_the_tasks_likely_to_breach(ws, cfg):
    review_history(ws.store(), cfg, NOW - timedelta(hours=40), TOOK)
    queue(ws, cfg, 8)
    out = ws.path / "dashboard.html"
    cli_ok(ws, "report", "dashboard", "--out", out, now=NOW.isoformat())
    html = out.read_text(encoding="utf-8")
    panel = html.split("Likely to breach", 1)[1].split("</section>", 1)[0]
    assert "Q-007" in panel and "7 ahead" in panel and "Q-000" not in panel  # the front is under 50%
    assert "H-0000" not in panel  # already past its deadline at pack: the breach panels show it


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 400 * 86400), st.integers(-8 * 86400, 30 * 86400))
def test_many_tasks_count_business_time_as_the_calendar_does(offset, delta):
    """sla forecast counts a deadline's business time by bisect over the calendar's days (100k
    tasks at once): the same seconds as the calendar's own walk, across a DST change and a holiday."""
    from datetime import date

    from ffctl.core.calendar import WALL_CLOCK, BusinessCalendar
    from ffctl.core.forecast import _Clock

    hours = {d: ((9 * 60, 12 * 60), (13 * 60, 18 * 60)) for d in range(5)} | {5: ((22 * 60, 24 * 60),)}
    berlin = BusinessCalendar("Europe/Berlin", hours, {date(2026, 3, 30)})
    now = datetime(2026, 1, 5, 7, 13, tzinfo=timezone.utc) + timedelta(seconds=offset)
    deadline = now + timedelta(seconds=delta)
    for cal in (berlin, WALL_CLOCK):
        clock = _Clock(cal, now, now + timedelta(days=3))
        expected = cal.between(now, deadline) if deadline > now else -cal.between(deadline, now)
        assert clock.left(deadline) == pytest.approx(expected, abs=1e-3)
