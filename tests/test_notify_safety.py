"""Hostile data and careless setups on the way out: mail headers from data, one bad notification
in a batch, TLS that checks certificates, and passwords that never cross the network in clear.
Real SMTP servers (aiosmtpd, with a certificate made in the test) and a real HTTP server on
127.0.0.1; both backends."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.helpers import SmtpServer, self_signed_certificate

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
PASSWORD_ENV = "FFCTL_TEST_SMTP_PASSWORD"


class Hooks:
    """A real HTTP server on loopback that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                hooks.received.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/T0K3N-s3cr3t?access_token=abc123"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_config(tmp_path, email: str, *, webhook: str = "http://127.0.0.1:9/hook") -> object:
    from ffctl.core.config import load_config

    path = tmp_path / "ffctl.toml"
    path.write_text(
        f"""
[defaults]
timezone = "UTC"
[roles.ops]
members = ["ann", "ben", "cat"]
[users.ann]
email = "ann@example.com"
[users.ben]
webhook = "{webhook}"
[workflows.main]
match = {{}}
nodes = ["review"]
[nodes.review]
owner = "ops"
sla = "1h"
[notify]
log = "sent.jsonl"
email = {{ {email} }}
""",
        encoding="utf-8",
    )
    return load_config(path)


def queue(store, cfg, people, subject):
    from ffctl.core import outbox

    with store.session(write=True) as s:
        outbox.queue(s, cfg, people, subject=subject, body=f"body of {subject}", at=NOW)


def send(store, cfg, at=NOW):
    from ffctl.core import notify

    return notify.send(store, cfg, now=at)


def statuses(store) -> dict:
    from ffctl.core import notify

    with store.session() as s:
        return {
            (r["recipient"], r["subject"]): (r["status"], r["attempts"], r["last_error"])
            for r in notify.list_notifications(s, limit=None)[0]
        }


@pytest.fixture
def plain_smtp():
    server = SmtpServer(password="s3cret")
    yield server
    server.stop()


# --- headers built from data ---------------------------------------------------------------------


def test_a_subject_with_crlf_cannot_add_a_header_and_never_stops_the_batch(store, tmp_path, plain_smtp, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    cfg = write_config(
        tmp_path,
        f'host = "127.0.0.1", port = {plain_smtp.port}, sender = "ffctl@example.com", '
        f'password_env = "{PASSWORD_ENV}", plain_login_on_loopback = true',
    )
    subjects = ["[ffctl] SO1 late", "[ffctl] SO2\r\nBcc: x@evil.example\r\nX-Evil: 1 late", "[ffctl] SO3 late"]
    for subject in subjects:
        queue(store, cfg, ["ann"], subject)
    report = send(store, cfg)
    assert (report.sent, report.retrying, report.failed) == (3, 0, 0)
    assert [rcpts for rcpts, _ in plain_smtp.messages] == [["ann@example.com"]] * 3  # nobody was added
    got = [msg for _, msg in plain_smtp.messages]
    assert [m["Subject"] for m in got] == [
        "[ffctl] SO1 late",
        "[ffctl] SO2 Bcc: x@evil.example X-Evil: 1 late",
        "[ffctl] SO3 late",
    ]
    assert all(m["Bcc"] is None and m["X-Evil"] is None for m in got)
    # runs later send nothing again and leave nothing pending
    for minutes in (1, 10, 100):
        assert send(store, cfg, NOW + timedelta(minutes=minutes)).items == []
    assert len(plain_smtp.messages) == 3
    assert {v[0] for v in statuses(store).values()} == {"sent"}


def test_one_failing_notification_is_its_own_failed_attempt_not_its_batchs(store, tmp_path, plain_smtp, monkeypatch):
    hooks = Hooks()
    try:
        monkeypatch.setenv(PASSWORD_ENV, "pässwörd")  # SMTP AUTH can only carry ASCII: this login raises
        cfg = write_config(
            tmp_path,
            f'host = "127.0.0.1", port = {plain_smtp.port}, sender = "ffctl@example.com", '
            f'password_env = "{PASSWORD_ENV}", plain_login_on_loopback = true',
            webhook=hooks.url,
        )
        queue(store, cfg, ["ben", "ann", "cat"], "[ffctl] SO1 late")  # webhook, email and log rows, one batch
        report = send(store, cfg)
        assert (report.sent, report.retrying) == (2, 1)
        state = statuses(store)
        assert state[("ben", "[ffctl] SO1 late")][:2] == ("sent", 1)
        assert state[("cat", "[ffctl] SO1 late")][:2] == ("sent", 1)
        status, attempts, error = state[("ann", "[ffctl] SO1 late")]
        assert (status, attempts) == ("pending", 1) and "is not ASCII text" in error and "ä" not in error
        for minutes in (2, 10, 30):  # the email keeps failing; what went out never goes again
            send(store, cfg, NOW + timedelta(minutes=minutes))
        assert len(hooks.received) == 1
        assert plain_smtp.messages == []
        lines = (tmp_path / "sent.jsonl").read_text(encoding="utf-8").splitlines()
        assert sorted(json.loads(line)["recipient"] for line in lines) == ["ben", "cat"]
    finally:
        hooks.stop()


# --- TLS --------------------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path):
    return self_signed_certificate(tmp_path)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls_checks_the_certificate_and_trusts_a_ca_file(store, tmp_path, certificate, mode, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    server = SmtpServer(password="s3cret", tls=mode, cert=certificate)
    try:
        tls = "starttls = true" if mode == "starttls" else "tls = true"
        base = (
            f'host = "127.0.0.1", port = {server.port}, sender = "ffctl@example.com", username = "ffctl", '
            f'password_env = "{PASSWORD_ENV}", {tls}'
        )
        cfg = write_config(tmp_path, base)
        queue(store, cfg, ["ann"], "[ffctl] SO1 late")
        report = send(store, cfg)
        assert report.retrying == 1 and "CERTIFICATE_VERIFY_FAILED" in report.items[0]["error"]
        assert server.logins == [] and server.messages == []  # the password never left

        cfg = write_config(tmp_path, base + f', ca_file = "{certificate[0].name}"')  # relative to the config
        assert send(store, cfg, NOW + timedelta(minutes=2)).sent == 1
        assert server.logins == [("ffctl", True, True)]
        assert [rcpts for rcpts, _ in server.messages] == [["ann@example.com"]]
    finally:
        server.stop()


def test_the_host_name_is_checked_too(store, tmp_path, monkeypatch):
    """A certificate for another name, even from a trusted CA, is refused."""
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    cert = self_signed_certificate(tmp_path, host="mail.example.com")
    server = SmtpServer(password="s3cret", tls="starttls", cert=cert)
    try:
        cfg = write_config(
            tmp_path,
            f'host = "127.0.0.1", port = {server.port}, sender = "ffctl@example.com", '
            f'password_env = "{PASSWORD_ENV}", starttls = true, ca_file = "{cert[0]}"',
        )
        queue(store, cfg, ["ann"], "hello")
        report = send(store, cfg)
        assert report.retrying == 1 and "CERTIFICATE_VERIFY_FAILED" in report.items[0]["error"]
        assert "127.0.0.1" in report.items[0]["error"] and server.logins == []
    finally:
        server.stop()


# --- config check: a password only over TLS -----------------------------------------------------------


def check(tmp_path, email: str):
    from typer.testing import CliRunner

    from ffctl.cli import app

    write_config(tmp_path, 'host = "127.0.0.1", sender = "a@example.com"')  # a valid file first
    text = (tmp_path / "ffctl.toml").read_text(encoding="utf-8")
    start = text.index("email = {")
    end = text.index("\n", start)
    (tmp_path / "ffctl.toml").write_text(text[:start] + "email = { " + email + " }" + text[end:], encoding="utf-8")
    return CliRunner().invoke(
        app, ["--config", str(tmp_path / "ffctl.toml"), "config", "check"], env={"FFCTL_DEBUG": None}
    )


def test_config_check_refuses_a_password_without_tls(tmp_path):
    r = check(tmp_path, 'host = "smtp.example.com", port = 25, sender = "a@example.com", password_env = "P"')
    assert r.exit_code == 2
    assert (
        "notify.email.password_env: the SMTP password would cross the network in clear text: "
        "set starttls = true (port 587) or tls = true (port 465)" in r.stderr
    )
    assert "plain_login_on_loopback" not in r.stderr  # not an option for a remote server

    r = check(tmp_path, 'host = "127.0.0.1", port = 25, sender = "a@example.com", password_env = "P"')
    assert r.exit_code == 2 and "or plain_login_on_loopback = true for a relay on this machine" in r.stderr

    r = check(
        tmp_path,
        'host = "smtp.example.com", sender = "a@example.com", password_env = "P", plain_login_on_loopback = true',
    )
    assert r.exit_code == 2 and "plain_login_on_loopback: only applies to a relay on this machine" in r.stderr

    r = check(tmp_path, 'host = "smtp.example.com", sender = "a@example.com", starttls = true, tls = true')
    assert r.exit_code == 2 and "exclude each other" in r.stderr

    r = check(tmp_path, 'host = "smtp.example.com", sender = "a@example.com", tls = true, ca_file = "nowhere.pem"')
    assert r.exit_code == 2 and "notify.email.ca_file: no such file" in r.stderr

    for ok in (
        'host = "smtp.example.com", sender = "a@example.com", password_env = "P", tls = true',
        'host = "smtp.example.com", port = 587, sender = "a@example.com", password_env = "P", starttls = true',
        'host = "localhost", port = 25, sender = "a@example.com", password_env = "P", plain_login_on_loopback = true',
        'host = "smtp.example.com", port = 25, sender = "a@example.com"',
    ):  # no password: nothing to protect
        r = check(tmp_path, ok)
        assert r.exit_code == 0, (ok, r.stderr)
    r = check(tmp_path, 'host = "smtp.example.com", sender = "a@example.com", password_env = "P", tls = true')
    assert "email via smtp.example.com:465 (TLS)" in r.stdout  # implicit TLS defaults to port 465
