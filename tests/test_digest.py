"""One sweep, one message per person and channel (SPEC 9.1), delivered to a real SMTP server and a
real HTTP server on 127.0.0.1, on both backends; with a sweep killed by SIGKILL and run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from tests.helpers import Hooks, SmtpServer, orders_named

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)  # a Monday; the nodes count wall-clock time


def config_text(smtp_port: int, hook_url: str) -> str:
    return f"""
[defaults]
timezone = "UTC"
[roles.clerk]
members = ["ann"]
escalate_to = "lead"
[roles.lead]
members = ["ben"]
[users.ann]
email = "ann@example.com"
webhook = "{hook_url}"
[users.ben]
email = "ben@example.com"
[workflows.main]
match = {{}}
nodes = ["review", "check"]
[nodes.review]
owner = "clerk"
sla = "1h"
warn_at = 0.5
escalation = [ {{ after = "0m", action = "remind" }}, {{ after = "1h", action = "escalate" }} ]
[nodes.check]
owner = "clerk"
sla = "1h"
warn_at = 0.5
[rules.slow_review]
kind = "dwell"
node = "review"
longer_than = "5h"
flag = "slow_review"
notify = ["lead"]
[notify]
log = "sent.jsonl"
email = {{ host = "127.0.0.1", port = {smtp_port}, sender = "ffctl@example.com" }}
webhook_timeout_seconds = 3
"""


@pytest.fixture
def mailbox():
    box = SmtpServer()
    yield box
    box.stop()


@pytest.fixture
def hooks():
    h = Hooks()
    yield h
    h.stop()


@pytest.fixture
def ws(workspace_with_config, mailbox, hooks):
    return workspace_with_config(config_text(mailbox.port, hooks.url))


def add(ws, n: int, *, created: datetime, prefix: str, node: str = "review") -> list[str]:
    """n orders that entered ``node`` at ``created``."""
    from ffctl.core import workflow
    from ffctl.core.config import load_config
    from ffctl.core.models import Customer, Order
    from ffctl.core.store import insert_or_ignore

    cfg = load_config(ws.config_path)
    store = ws.store()
    ids = [f"{prefix}-{i:06d}" for i in range(n)]
    try:
        with store.session(write=True) as s:
            insert_or_ignore(s, Customer, [{"customer": "c1", "name": "客户一"}], ["customer"])
            s.execute(sa.insert(Order), [{"order_id": i, "customer": "c1", "created_at": created} for i in ids])
            workflow.enter_orders(s, cfg, workflow.order_facts(s, ids), actor="test")
        if node != "review":
            for oid in ids:
                with store.session(write=True) as s:
                    workflow.complete(s, cfg, oid, at=created, actor="test")
    finally:
        store.dispose()
    return ids


def mail_to(mailbox, address: str) -> list:
    return [msg for rcpts, msg in mailbox.messages if rcpts == [address]]


def text(mail) -> str:
    """An email's body as written (decoded; SMTP carries it with CRLF line ends)."""
    return mail.get_payload(decode=True).decode(mail.get_content_charset() or "utf-8").replace("\r\n", "\n")


def test_a_digest_of_five_orders_is_one_message_per_channel(ws, mailbox, hooks):
    late = add(ws, 2, created=T0 - timedelta(hours=3), prefix="LATE")  # reminded, then escalated to ben
    risky = add(ws, 3, created=T0 - timedelta(minutes=40), prefix="RISK")  # at risk since 30m in
    r = ws.run("sla", "sweep", "-f", "json", now=T0.isoformat())
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["at_risk"], doc["breached"], doc["actions"]["remind"], doc["actions"]["escalate"]) == (5, 2, 2, 2)
    # ann: one email and one webhook call, each naming all five; ben: one email about the two late ones
    assert doc["notifications_queued"] == doc["notifications_sent"] == 3
    (mail,) = mail_to(mailbox, "ann@example.com")
    ((_, posted),) = hooks.received
    assert mail["Subject"] == posted["subject"] == "[ffctl] 5 orders need you: 2 breached, 3 at risk"
    body = text(mail)
    assert body == posted["body"] + "\n"
    assert orders_named(body) == set(late + risky)
    lines = [line for line in body.splitlines() if line.startswith("- ")]
    assert len(lines) == 5  # one line per order, past-deadline orders first
    assert [line[2:13] for line in lines] == late + risky
    assert lines[0] == "- LATE-000000 review: reminder, 2h late"
    assert lines[2] == "- RISK-000000 review: at risk, due 2026-03-02 12:20"
    (mail,) = mail_to(mailbox, "ben@example.com")
    assert mail["Subject"] == "[ffctl] 2 orders need you: 2 breached" and orders_named(text(mail)) == set(late)
    # the next sweep has nothing new for anyone; and nothing is sent twice
    r = ws.run("sla", "sweep", "-f", "json", now=(T0 + timedelta(minutes=1)).isoformat())
    assert json.loads(r.stdout)["notifications_queued"] == 0
    assert len(mailbox.messages) == 2 and len(hooks.received) == 1
    with open(ws.path / "sent.jsonl", encoding="utf-8") as f:
        assert len(f.readlines()) == 3


def test_a_single_order_keeps_a_message_of_its_own(ws, mailbox, hooks):
    (oid,) = add(ws, 1, created=T0 - timedelta(hours=3), prefix="ONE")
    assert ws.run("sla", "sweep", now=T0.isoformat()).exit_code == 0
    (mail,) = mail_to(mailbox, "ann@example.com")
    assert mail["Subject"] == f"[ffctl] {oid} review: reminder, 2h late"
    assert text(mail).startswith(f"Reminder: order {oid} at review is past its deadline 2026-03-02 10:00 by 2h")
    assert f"`ffctl order show {oid}`" in text(mail)


def test_at_risk_and_breached_in_one_sweep_is_told_as_the_breach_alone(ws, mailbox, hooks):
    """A node without a reminder: the one notice is the breach; the at_risk event is kept and says so."""
    oids = add(ws, 2, created=T0 - timedelta(hours=2), prefix="CHK", node="check")
    r = ws.run("sla", "sweep", "-f", "json", now=T0.isoformat())
    doc = json.loads(r.stdout)
    assert (doc["at_risk"], doc["breached"], doc["notifications_queued"]) == (2, 2, 2)  # ann: email + webhook
    (mail,) = mail_to(mailbox, "ann@example.com")
    assert mail["Subject"] == "[ffctl] 2 orders need you: 2 breached"
    assert "at risk" not in text(mail)
    assert "- CHK-000000 check: past its deadline, 1h late" in text(mail)
    timeline = json.loads(ws.run("order", "show", oids[0], "-f", "json").stdout)["timeline"]
    (at_risk,) = [e for e in timeline if e["event"] == "at_risk"]
    assert "not notified: breached in the same sweep" in at_risk["detail"]
    (breached,) = [e for e in timeline if e["event"] == "breached"]
    assert breached["detail"].endswith("told clerk")


def test_the_rules_alerts_join_the_sweeps_digest(ws, mailbox, hooks):
    late = add(ws, 3, created=T0 - timedelta(hours=6), prefix="SLOW")  # escalated to ben, and flagged slow_review
    assert ws.run("sla", "sweep", now=T0.isoformat()).exit_code == 0
    (mail,) = mail_to(mailbox, "ben@example.com")
    assert mail["Subject"] == "[ffctl] 3 orders need you: 3 breached"
    body = text(mail)
    assert "- SLOW-000000 review: escalated, 5h late; Order SLOW-000000 flagged slow_review" in body
    assert orders_named(body) == set(late)


def test_a_digest_that_fails_is_retried_whole_and_sent_once(ws, mailbox, hooks):
    add(ws, 4, created=T0 - timedelta(minutes=40), prefix="RISK")
    hooks.status = 503
    r = ws.run("sla", "sweep", "-f", "json", now=T0.isoformat())
    doc = json.loads(r.stdout)
    assert (doc["notifications_queued"], doc["notifications_sent"], doc["notifications_failed"]) == (2, 1, 1)
    hooks.status = 200
    assert ws.run("notify", "send", now=(T0 + timedelta(minutes=1)).isoformat()).exit_code == 0
    assert hooks.received == []  # not due before its backoff
    assert ws.run("notify", "send", now=(T0 + timedelta(minutes=2)).isoformat()).exit_code == 0
    ((headers, posted),) = hooks.received
    assert posted["subject"] == "[ffctl] 4 orders need you: 4 at risk"
    rows = json.loads(ws.run("notify", "list", "-f", "json").stdout)
    assert sorted((n["channel"], n["status"], n["attempts"]) for n in rows) == [
        ("email", "sent", 1),
        ("webhook", "sent", 2),
    ]
    assert headers["X-Ffctl-Notification-Id"] == str(next(n["id"] for n in rows if n["channel"] == "webhook"))


# --- a killed sweep, with real processes --------------------------------------------------------------


def test_a_sweep_killed_halfway_then_rerun_sends_each_digest_once(ws, mailbox, hooks):
    """SIGKILL while the batches commit; the rerun sends ann one email and one webhook call that
    name every order once, the killed sweep's orders included."""
    n = 3000  # three batches: the kill lands after the first commit
    oids = add(ws, n, created=T0 - timedelta(hours=1, minutes=30), prefix="KILL")  # at risk, breached, reminded
    env = {
        **os.environ,
        "FFCTL_CONFIG": str(ws.config_path),
        "FFCTL_DB": ws.db_url,
        "FFCTL_NOW": T0.isoformat(),
        "FFCTL_USER": "cron",
    }
    store = ws.store()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ffctl", "sla", "sweep", "-f", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        give_up = time.monotonic() + 60
        while time.monotonic() < give_up and proc.poll() is None:
            with store.session() as s:
                if s.execute(sa.text("SELECT count(*) FROM task_step")).scalar():
                    break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        with store.session() as s:
            fired = s.execute(sa.text("SELECT count(*) FROM task_step")).scalar()
        assert 0 < fired < n * 3, f"the sweep was not killed halfway ({fired} steps committed)"
        assert mailbox.messages == [] and hooks.received == []
        rerun = subprocess.run(
            [sys.executable, "-m", "ffctl", "sla", "sweep", "-f", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert rerun.returncode == 0, rerun.stderr
        doc = json.loads(rerun.stdout)
        assert doc["breached"] == n - fired // 3
        assert doc["notifications_queued"] == doc["notifications_sent"] == 2
        (mail,) = mail_to(mailbox, "ann@example.com")
        ((_, posted),) = hooks.received
        for subject, body in ((mail["Subject"], text(mail)), (posted["subject"], posted["body"])):
            assert subject == f"[ffctl] {n} orders need you: {n} breached"
            assert orders_named(body) == set(oids) and body.count("\n- KILL-") == n
        # nothing left to send, and another sweep or send adds nothing
        listed = json.loads(ws.run("notify", "list", "-f", "json").stdout)
        assert sorted((m["recipient"], m["channel"], m["status"]) for m in listed) == [
            ("ann", "email", "sent"),
            ("ann", "webhook", "sent"),
        ]
        again = subprocess.run(
            [sys.executable, "-m", "ffctl", "sla", "sweep", "-f", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert json.loads(again.stdout)["notifications_queued"] == 0
        assert len(mailbox.messages) == 1 and len(hooks.received) == 1
    finally:
        store.dispose()


# --- the digest's shape, for any items (no store) ------------------------------------------------------


def test_a_digest_names_each_order_on_one_line_past_deadline_first():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ffctl.core.outbox import RANKS, digest_item, render

    item = st.builds(
        lambda n, rank, short, high: digest_item(
            key=f"SO-{n:06d}",
            head=f"SO-{n:06d} review",
            short=short,
            body=f"about SO-{n:06d}",
            rank=rank,
            order_id=f"SO-{n:06d}",
            priority="high" if high else "normal",
        ),
        st.integers(0, 12),
        st.sampled_from(RANKS),
        st.sampled_from(["reminder, 1h late", "at risk, due 10:00"]),
        st.booleans(),
    )

    @settings(max_examples=200, deadline=None)
    @given(st.lists(item, min_size=1, max_size=40))
    def check(items):
        subject, body, priority, order_id = render(items)
        keys = list(dict.fromkeys(i["key"] for i in items))
        assert priority == ("high" if any(i["priority"] == "high" for i in items) else "normal")
        if len(keys) == 1:
            assert order_id == keys[0] and subject.startswith(f"[ffctl] {keys[0]} review: ")
            return
        lines = [line[2:] for line in body.splitlines() if line.startswith("- ")]
        assert sorted(line.split(" ", 1)[0] for line in lines) == sorted(keys)  # one line per order
        rank = {k: min(RANKS.index(i["rank"]) for i in items if i["key"] == k) for k in keys}
        listed = [rank[line.split(" ", 1)[0]] for line in lines]
        assert listed == sorted(listed)  # past the deadline first, then at risk, then alerts
        assert subject.startswith(f"[ffctl] {len(keys)} orders need you: ")
        counts = [int(part.split(" ", 1)[0]) for part in subject.split(": ", 1)[1].split(", ")]
        assert sum(counts) == len(keys) and order_id is None

    check()
