"""Exactly once with real processes on both backends: overlapping sweeps, a killed sweep, late sweeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
import sqlalchemy as sa
from helpers import REVIEW_LADDER, REVIEW_MESSAGES
from helpers import SWEEP_T0 as T0
from helpers import add_sweep_orders as add_orders
from helpers import complete_task_of as advance
from helpers import store_scalar as scalar
from helpers import sweep_config as load

from tests.helpers import messages, orders_named

pytestmark = pytest.mark.slow

#: Started together: each process imports ffctl, then waits for the barrier file before running.
BARRIER = """
import os, sys, time
from ffctl.cli import main
import ffctl.core.sla, ffctl.core.store, ffctl.core.config, sqlalchemy  # warm, so all start at once
barrier = sys.argv[1]
while not os.path.exists(barrier):
    time.sleep(0.002)
sys.argv = ["ffctl"] + sys.argv[2:]
main()
"""

LATE = T0 + timedelta(hours=10)
EXPECTED = {  # node -> the sweep's own events for one task (auto actions are written by workflow)
    "review": [event for _, event in REVIEW_LADDER],
    "approve": ["at_risk", "breached"],
    "triage": ["at_risk", "breached"],
}


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request, make_db_url, tmp_path):
    url = make_db_url(request.param)
    cfg = load(tmp_path)
    from ffctl.core.store import Store

    store = Store(url)
    yield {
        "url": url,
        "cfg": cfg,
        "store": store,
        "tmp": tmp_path,
        "env": {
            **os.environ,
            "FFCTL_CONFIG": str(tmp_path / "ffctl.toml"),
            "FFCTL_DB": url,
            "FFCTL_USER": "cron",
            "FFCTL_DEBUG": "1",
        },
    }
    store.dispose()


def start(env, *args, barrier=None) -> subprocess.Popen:
    cmd = [sys.executable, "-c", BARRIER, str(barrier), *args] if barrier else [sys.executable, "-m", "ffctl", *args]
    return subprocess.Popen(cmd, env=env["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out)


def sweep_args(at) -> list[str]:
    return ["--now", at.isoformat(), "sla", "sweep", "--format", "json", "--no-send", "--no-rules"]


def populate(env, review: int, approve: int, rush: int) -> None:
    store, cfg = env["store"], env["cfg"]
    add_orders(store, cfg, review)
    for oid in add_orders(store, cfg, approve, prefix="AP"):
        advance(store, cfg, oid, T0 + timedelta(minutes=10))
    add_orders(store, cfg, rush, prefix="RU", channel="rush")


def due_count(store, at) -> int:
    from ffctl.core.models import Task

    with store.session() as s:
        return s.execute(
            sa.select(sa.func.count()).select_from(Task).where(Task.status == "open", Task.next_action_at <= at)
        ).scalar()


def assert_exactly_once(
    env, review: int, approve: int, rush: int, reports: list[dict], *, one_clock: bool = True
) -> None:
    """Every due step fired once, in ladder order, and told once: one message per person and
    channel per sweep at most, and (sweeps at one clock) each order named in one of them."""
    store = env["store"]
    from ffctl.core.models import Event, Task

    with store.session() as s:
        nodes = dict(s.execute(sa.select(Task.id, Task.node)).all())
        events = s.execute(
            sa.select(Event.task_id, Event.event)
            .where(Event.actor == "sla-sweep", Event.task_id.isnot(None))
            .order_by(Event.id)
        ).all()
        autos = Counter(
            s.execute(sa.select(Event.event).where(Event.event.in_(["auto_approved", "auto_rejected"]))).scalars()
        )
    per_task: dict[int, list[str]] = defaultdict(list)
    for task_id, event in events:
        per_task[task_id].append(event)
    by_node = Counter(nodes[t] for t in per_task)
    assert by_node == Counter({"review": review, "approve": approve, "triage": rush})
    for task_id, seq in per_task.items():
        assert seq == EXPECTED[nodes[task_id]], (task_id, seq)
    assert autos == Counter({"auto_approved": approve, "auto_rejected": rush})
    steps = review * len(REVIEW_LADDER) + (approve + rush) * 3
    assert scalar(store, "SELECT count(*) FROM task_step") == steps
    sent = messages(store)
    assert all(due is not None for *_, due in sent)  # every part was merged into a message
    per_person = Counter((who, channel) for who, channel, *_ in sent)
    assert sorted(per_person) == (REVIEW_MESSAGES if review else [("ann", "email")])
    assert max(per_person.values()) <= len(reports)
    named: dict[tuple, Counter] = defaultdict(Counter)
    for who, channel, subject, body, _ in sent:
        named[(who, channel)].update(orders_named(subject, body))
    with store.session() as s:
        reviewed = set(
            s.execute(sa.select(Task.order_id).where(Task.node == "review", Task.status == "open")).scalars()
        )
        every = set(s.execute(sa.select(Task.order_id)).scalars())
    for person, orders in named.items():
        assert set(orders) == (every if person == ("ann", "email") else reviewed), person
        if one_clock:  # all of a task's steps fire in one sweep, so its items reach a person in one message
            assert set(orders.values()) == {1}, person
    # and the reports of all the sweeps together count each thing once
    total = Counter()
    for r in reports:
        total.update(
            {"at_risk": r["at_risk"], "breached": r["breached"], "notes": r["notifications_queued"], **r["actions"]}
        )
    assert total["at_risk"] == total["breached"] == review + approve + rush
    assert (total["remind"], total["escalate"], total["notify"]) == (review, 3 * review, review)
    assert (total["auto_approve"], total["auto_reject"], total["notes"]) == (approve, rush, len(sent))
    assert due_count(store, LATE) == 0


def test_four_sweeps_at_once_fire_each_step_exactly_once(env, tmp_path):
    populate(env, review=200, approve=20, rush=20)
    barrier = tmp_path / "go"
    procs = [start(env, *sweep_args(LATE), barrier=barrier) for _ in range(4)]
    time.sleep(1.5)  # let every process import ffctl and reach the barrier
    barrier.touch()
    reports = [finish(p) for p in procs]
    assert_exactly_once(env, 200, 20, 20, reports)
    assert sum(1 for r in reports if r["items"]) >= 1


def test_sweeps_at_different_clocks_overlapping_then_late(env, tmp_path):
    """Missed runs: on-time and late sweeps overlap; every step fires once, in ladder order.

    (Review tasks only: where an auto action lands depends on which clock reaches it first.)
    """
    populate(env, review=200, approve=0, rush=0)
    barrier = tmp_path / "go"
    clocks = [T0 + timedelta(minutes=45), T0 + timedelta(hours=1, minutes=40), LATE, LATE]
    procs = [start(env, *sweep_args(at), barrier=barrier) for at in clocks]
    time.sleep(1.5)
    barrier.touch()
    reports = [finish(p) for p in procs]
    assert_exactly_once(env, 200, 0, 0, reports, one_clock=False)


def test_a_sweep_killed_halfway_then_rerun_fires_everything_once(env):
    n = 3000  # three batches: the kill lands after the first commit
    populate(env, review=n, approve=0, rush=0)
    at = T0 + timedelta(hours=1, minutes=5)  # at_risk, breached, remind: three steps each
    store = env["store"]
    proc = start(env, *sweep_args(at))
    deadline = time.monotonic() + 60
    fired = 0
    while time.monotonic() < deadline and proc.poll() is None:
        fired = scalar(store, "SELECT count(*) FROM task_step")
        if fired:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    done = scalar(store, "SELECT count(*) FROM task_step")
    assert 0 < done < n * 3, f"the sweep was not killed halfway ({done} steps committed)"
    assert done % 3 == 0  # whole tasks only: a batch commits with its steps, events and notifications
    assert scalar(store, "SELECT count(*) FROM event WHERE actor = 'sla-sweep'") == done
    # what the killed sweep queued waits, in parts, for a sweep to end: nothing can be sent yet
    assert scalar(store, "SELECT count(*) FROM notification") > 0
    assert scalar(store, "SELECT count(*) FROM notification WHERE next_attempt_at IS NOT NULL") == 0
    rerun = finish(start(env, *sweep_args(at)))
    assert rerun["breached"] == n - done // 3
    assert scalar(store, "SELECT count(*) FROM task_step") == n * 3
    assert scalar(store, "SELECT count(*) FROM event WHERE actor = 'sla-sweep'") == n * 3
    # one reminder digest to ann naming every order once: the killed sweep's part and the rerun's
    ((who, channel, subject, body, due),) = messages(store)
    assert (who, channel, due, rerun["notifications_queued"]) == ("ann", "email", at, 1)
    assert subject == f"[ffctl] {n} orders need you: {n} breached"
    assert orders_named(body) == {f"SO-{i:06d}" for i in range(n)} and body.count("\n- SO-") == n
    assert scalar(store, "SELECT count(DISTINCT task_id) FROM event WHERE event = 'reminded'") == n
    assert due_count(store, at) == 0
