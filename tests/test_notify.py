"""Delivering the outbox to a real SMTP server and a real HTTP server on 127.0.0.1 (both backends)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.helpers import Hooks, SmtpServer, free_port

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def mailbox():
    box = SmtpServer(password="s3cret")
    yield box
    box.stop()


@pytest.fixture
def hooks():
    h = Hooks()
    yield h
    h.stop()


def config_text(smtp_port: int, hook_url: str, *, max_attempts: int = 5, login: bool = True) -> str:
    auth = (
        ', username = "ffctl", password_env = "FFCTL_TEST_SMTP_PASSWORD", plain_login_on_loopback = true'
        if login
        else ""
    )
    return f"""
[defaults]
timezone = "UTC"
[roles.ops]
members = ["ann", "ben", "cat"]
[users.ann]
email = "ann@example.com"
[users.ben]
webhook = "{hook_url}"
[users.dan]
webhook = "http://127.0.0.1:{free_port()}/closed"
[workflows.main]
match = {{}}
nodes = ["review"]
[nodes.review]
owner = "ops"
sla = "1h"
[notify]
log = "sent.jsonl"
email = {{ host = "127.0.0.1", port = {smtp_port}, sender = "ffctl@example.com"{auth} }}
max_attempts = {max_attempts}
webhook_timeout_seconds = 3
"""


@pytest.fixture
def setup(tmp_path, store, mailbox, hooks, monkeypatch):
    from ffctl.core.config import load_config

    monkeypatch.setenv("FFCTL_TEST_SMTP_PASSWORD", "s3cret")

    def make(**kw):
        path = tmp_path / "ffctl.toml"
        path.write_text(config_text(mailbox.port, hooks.url, **kw), encoding="utf-8")
        return load_config(path)

    return make


def queue(store, cfg, recipients, subject="hello", key=None, at=NOW) -> int:
    from ffctl.core import outbox

    with store.session(write=True) as s:
        return outbox.queue(s, cfg, recipients, subject=subject, body=f"body of {subject}", at=at, dedupe_key=key)


def send(store, cfg, at=NOW):
    from ffctl.core import notify

    return notify.send(store, cfg, now=at)


def listed(store, **kw) -> list[dict]:
    from ffctl.core import notify

    with store.session() as s:
        return notify.list_notifications(s, **kw)[0]


def log_lines(cfg) -> list[dict]:
    path = cfg.notify.log
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


# --- channels ----------------------------------------------------------------------------------------


def test_email_goes_through_smtp_with_login_and_is_logged(store, setup, mailbox):
    cfg = setup()
    assert queue(store, cfg, ["ann"], subject="order late") == 1
    report = send(store, cfg)
    assert (report.sent, report.retrying, report.failed) == (1, 0, 0)
    ((rcpts, msg),) = mailbox.messages
    assert rcpts == ["ann@example.com"]
    assert msg["Subject"] == "order late" and msg["From"] == "ffctl@example.com"
    assert msg.get_payload().strip() == "body of order late"
    assert mailbox.logins == [("ffctl", True, False)]  # (login, accepted, over TLS)
    (row,) = listed(store)
    assert (row["status"], row["attempts"], row["sent_at"]) == ("sent", 1, NOW)
    assert msg["X-Ffctl-Notification-Id"] == str(row["id"])
    (line,) = log_lines(cfg)
    assert (line["id"], line["recipient"], line["channel"], line["address"]) == (
        row["id"],
        "ann",
        "email",
        "ann@example.com",
    )
    assert send(store, cfg, NOW + timedelta(hours=1)).items == []  # nothing is sent twice


def test_webhook_posts_json_with_a_stable_id_header(store, setup, hooks):
    cfg = setup()
    queue(store, cfg, ["ben"], subject="escalated")
    assert send(store, cfg).sent == 1
    ((headers, body),) = hooks.received
    (row,) = listed(store)
    assert headers["X-Ffctl-Notification-Id"] == str(row["id"])
    assert headers["Idempotency-Key"] == f"ffctl-notification-{row['id']}"
    assert body["id"] == row["id"] and body["subject"] == "escalated" and body["recipient"] == "ben"
    assert body["created_at"] == "2026-03-02T09:00:00+00:00"


def test_a_person_without_channels_is_reached_through_the_log(store, setup):
    cfg = setup()
    queue(store, cfg, ["cat"])
    assert send(store, cfg).sent == 1
    assert [(line["recipient"], line["channel"], line["address"]) for line in log_lines(cfg)] == [("cat", "log", None)]


def test_a_missing_smtp_password_is_retried_until_it_is_set(store, setup, mailbox, monkeypatch):
    cfg = setup()
    monkeypatch.delenv("FFCTL_TEST_SMTP_PASSWORD")
    queue(store, cfg, ["ann"])
    report = send(store, cfg)
    assert report.retrying == 1
    assert report.items[0]["error"] == "the SMTP password variable FFCTL_TEST_SMTP_PASSWORD is not set"
    assert mailbox.messages == [] and mailbox.logins == []
    monkeypatch.setenv("FFCTL_TEST_SMTP_PASSWORD", "s3cret")
    assert send(store, cfg, NOW + timedelta(minutes=2)).sent == 1
    assert len(mailbox.messages) == 1 and mailbox.logins == [("ffctl", True, False)]


# --- failures, backoff, recovery -----------------------------------------------------------------------


def test_an_outage_backs_off_exponentially_then_recovers(store, setup, hooks):
    cfg = setup()
    queue(store, cfg, ["ben"])
    hooks.status = 503
    report = send(store, cfg)
    assert report.retrying == 1 and report.items[0]["error"].endswith("answered HTTP 503")
    (row,) = listed(store)
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("pending", 1, NOW + timedelta(minutes=2))
    assert send(store, cfg, NOW + timedelta(minutes=1)).items == []  # not due yet
    assert send(store, cfg, NOW + timedelta(minutes=2)).retrying == 1
    assert listed(store)[0]["next_attempt_at"] == NOW + timedelta(minutes=2 + 4)
    hooks.status = 200
    assert send(store, cfg, NOW + timedelta(minutes=6)).sent == 1
    (row,) = listed(store)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 3, None)
    assert len(hooks.received) == 1


def test_a_closed_port_is_retried_then_failed_and_listed(store, setup):
    cfg = setup(max_attempts=3)
    queue(store, cfg, ["dan"])
    at = NOW
    for expected in ("pending", "pending", "failed"):
        started = time.monotonic()
        send(store, cfg, at)
        assert time.monotonic() - started < 3  # a refused connection fails fast
        (row,) = listed(store)
        assert row["status"] == expected
        at = at + timedelta(hours=1)
    assert row["attempts"] == 3 and "Connection refused" in row["last_error"]
    assert send(store, cfg, at + timedelta(days=1)).items == []  # failed rows are left alone
    assert [r["id"] for r in listed(store, status="failed")] == [row["id"]]


def test_one_dead_server_costs_one_try_per_run(store, setup, mailbox):
    cfg = setup()
    mailbox.stop()
    mailbox.stop = lambda: None  # already stopped
    for i in range(5):
        queue(store, cfg, ["ann"], subject=f"n{i}")
    report = send(store, cfg)
    assert report.retrying == 5
    assert len({item["error"] for item in report.items}) == 1


# --- two senders ---------------------------------------------------------------------------------------


def test_two_senders_at_once_never_send_a_row_twice(store, setup, hooks, tmp_path):
    cfg = setup()
    for i in range(60):
        queue(store, cfg, ["ben", "cat"], subject=f"n{i}")  # 60 webhook rows and 60 log rows
    env = {
        **os.environ,
        "FFCTL_CONFIG": str(tmp_path / "ffctl.toml"),
        "FFCTL_DB": store.url,
        "FFCTL_NOW": NOW.isoformat(),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ffctl", "notify", "send", "-f", "json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        reports.append(json.loads(out))
    assert sum(r["sent"] for r in reports) == 120
    ids = [body["id"] for _, body in hooks.received]
    assert len(ids) == len(set(ids)) == 60
    logged = [line["id"] for line in log_lines(cfg)]
    assert len(logged) == len(set(logged)) == 120
    assert {r["status"] for r in listed(store, limit=None)} == {"sent"}


# --- the CLI -------------------------------------------------------------------------------------------


def run(tmp_path, store, *args, now=NOW):
    from typer.testing import CliRunner

    from ffctl.cli import app

    env = {
        "FFCTL_CONFIG": str(tmp_path / "ffctl.toml"),
        "FFCTL_DB": store.url,
        "FFCTL_NOW": now.isoformat(),
        "FFCTL_DEBUG": None,
        "COLUMNS": "250",
    }
    return CliRunner().invoke(app, list(args), env=env)


def test_notify_list_json_shape_and_filters(store, setup, tmp_path):
    cfg = setup(max_attempts=1)
    queue(store, cfg, ["ann", "dan"])
    r = run(tmp_path, store, "notify", "send")
    assert r.exit_code == 1 and "failed for good" in r.stderr  # dan's webhook port is closed
    doc = json.loads(run(tmp_path, store, "notify", "list", "-f", "json").stdout)
    assert [d["recipient"] for d in doc] == ["dan", "ann"]  # newest first
    assert set(doc[0]) >= {
        "id",
        "recipient",
        "channel",
        "subject",
        "body",
        "status",
        "attempts",
        "created_at",
        "sent_at",
    }
    assert doc[1]["sent_at"] == "2026-03-02T09:00:00+00:00" and doc[1]["status"] == "sent"
    failed = json.loads(run(tmp_path, store, "notify", "list", "--failed", "-f", "json").stdout)
    assert [(d["recipient"], d["status"], d["attempts"]) for d in failed] == [("dan", "failed", 1)]
    assert (
        json.loads(run(tmp_path, store, "notify", "list", "--status", "sent", "-f", "json").stdout)[0]["recipient"]
        == "ann"
    )
    r = run(tmp_path, store, "notify", "list", "--limit", "1", "-f", "json")
    assert len(json.loads(r.stdout)) == 1 and r.stderr == "Showing 1 of 2 notifications; --limit 0 for all.\n"
    r = run(tmp_path, store, "notify", "list", "--limit", "2", "-f", "csv")
    assert len(r.stdout.splitlines()) == 3 and r.stderr == ""
    r = run(tmp_path, store, "notify", "list", "--status", "lost")
    assert r.exit_code == 2 and "pending, sent, failed" in r.stderr
    r = run(tmp_path, store, "notify", "list", "-f", "table")
    assert r.exit_code == 0 and "Connection refused" in r.stdout


def test_the_sweep_sends_what_it_queued(store, setup, hooks, tmp_path):
    from helpers import add_sweep_orders as add_orders

    cfg = setup()
    add_orders(store, cfg, 1)
    r = run(tmp_path, store, "sla", "sweep", "-f", "json", now=NOW + timedelta(minutes=50))
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["at_risk"] == 1 and doc["notifications_queued"] == doc["notifications_sent"] == 3
    assert [body["subject"] for _, body in hooks.received] == [
        "[ffctl] SO-000000 review: at risk, due 2026-03-02 10:00"
    ]
