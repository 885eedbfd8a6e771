"""Secrets never print: database passwords on every path a URL takes (config, --db, errors,
cron logs) and webhook tokens in the log file, `notify list` and `config check`."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.conftest import EXAMPLE_CONFIG, require_pg
from tests.helpers import free_port

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def cli(*args, env=None, cwd=None):
    from ffctl.cli import app

    base = {"FFCTL_DEBUG": None, "FFCTL_DB": None, "FFCTL_CONFIG": None, "FFCTL_NOW": None, "COLUMNS": "200"}
    if cwd is not None:
        old = os.getcwd()
        os.chdir(cwd)
    try:
        return CliRunner().invoke(app, [str(a) for a in args], env={**base, **(env or {})})
    finally:
        if cwd is not None:
            os.chdir(old)


def assert_hidden(result, *secrets):
    for secret in (s for s in secrets if len(s) >= 4):  # "rd" of p@ss:w@rd is in "password"
        assert secret not in result.output, (secret, result.output)
    assert "Traceback" not in result.output and "this is a bug" not in result.output, result.output


# --- the masking function ----------------------------------------------------------------------------

_word = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    user=st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
    password=_word,
    host=st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5})?", fullmatch=True),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    db=st.from_regex(r"[a-z_]{1,10}", fullmatch=True),
)
def test_mask_url_reads_urls_as_sqlalchemy_does_and_hides_the_password(user, password, host, port, db):
    from sqlalchemy.engine import make_url

    from ffctl.core.secrets import mask_url

    where = f"{host}:{port}" if port else host
    escaped = f"postgresql+psycopg://{user}:{quote(password, safe='')}@{where}/{db}"
    masked = mask_url(escaped)
    parsed, shown = make_url(escaped), make_url(masked)
    assert (shown.username, shown.host, shown.port, shown.database) == (
        parsed.username,
        parsed.host,
        parsed.port,
        parsed.database,
    )
    assert shown.password == "***"
    assert masked == parsed.render_as_string(hide_password=True)
    # typed without escaping ('@', ':', '/' and all): still the same user, host and database, and no password
    raw = mask_url(f"postgresql://{user}:{password}@{where}/{db}?sslmode=require")
    assert raw == f"postgresql://{user}:***@{where}/{db}?sslmode=require"
    in_query = password.replace("&", "").replace(";", "").replace("#", "") or "x"  # these end a query value
    raw = mask_url(f"postgresql://{user}@{where}/{db}?password={in_query}&sslmode=require")
    assert raw == f"postgresql://{user}@{where}/{db}?password=***&sslmode=require"


def test_mask_endpoint_shows_scheme_and_host_and_tells_endpoints_apart():
    from ffctl.core.secrets import mask_endpoint

    a = mask_endpoint("https://oapi.dingtalk.com/robot/send?access_token=tok-AAA")
    b = mask_endpoint("https://oapi.dingtalk.com/robot/send?access_token=tok-BBB")
    assert a.startswith("https://oapi.dingtalk.com/… (#") and "tok-" not in a + b and a != b
    assert mask_endpoint("https://hooks.slack.com/services/T0/B0/XyZ").startswith("https://hooks.slack.com/… (#")
    assert "XyZ" not in mask_endpoint("https://hooks.slack.com/services/T0/B0/XyZ")
    assert mask_endpoint("http://u:pw@127.0.0.1:8080/hook").startswith("http://127.0.0.1:8080/… (#")


# --- database passwords --------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["hunter2x", "P@ssw0rd", "p@ss:w@rd", "pa/ss@wd"])
def test_no_error_path_prints_a_database_password(tmp_path, password):
    port = free_port()  # nothing listens there: a connection error
    for url in (
        f"postgresql+psycopg://ops:{password}@127.0.0.1:{port}/ffctl",
        f"postgresql://ops@127.0.0.1:{port}/ffctl?password={password}&sslmode=disable",
    ):
        for args in (["db", "current"], ["order", "list"], ["config", "show-path"], ["init"]):
            config = tmp_path / "new" / "ffctl.toml" if args == ["init"] else EXAMPLE_CONFIG
            r = cli("--db", url, *args, env={"FFCTL_CONFIG": str(config)})
            assert_hidden(r, password, quote(password, safe=""), password.split("@")[-1])
            if args != ["config", "show-path"]:
                assert (
                    r.exit_code == 1 and "Connection refused" in r.stderr and "postgresql+psycopg://ops" in r.stderr
                ), r.output
            else:
                assert "***" in r.stdout
    # the same through the config file, and in `config check`
    (tmp_path / "ffctl.toml").write_text(
        EXAMPLE_CONFIG.read_text(encoding="utf-8").replace(
            'url = "sqlite:///ffctl.db"', f'url = "postgresql://ops:{password}@127.0.0.1:{port}/ffctl"', 1
        ),
        encoding="utf-8",
    )
    env = {"FFCTL_CONFIG": str(tmp_path / "ffctl.toml")}
    r = cli("config", "check", env=env)
    assert r.exit_code == 0 and "database  postgresql://ops:***@127.0.0.1" in r.stdout
    assert_hidden(r, password)
    r = cli("sla", "sweep", env=env)  # what cron would log
    assert r.exit_code == 1
    assert_hidden(r, password, password.split("@")[-1])


def test_an_unescaped_at_in_the_password_reaches_the_right_host(make_db_url):
    """`p@ss:w@rd` typed as is: ffctl splits at the last '@' and the store answers (trust auth).
    PostgreSQL only: a SQLite URL has no password."""
    require_pg()
    url = make_db_url("postgresql").replace("postgresql+psycopg://root@", "postgresql+psycopg://root:p@ss:w@rd@")
    r = cli("--db", url, "db", "current", env={"FFCTL_CONFIG": str(EXAMPLE_CONFIG)})
    assert r.exit_code == 0, r.output
    assert "root:***@127.0.0.1" in r.stderr
    assert_hidden(r, "p@ss", "w@rd", "ss:w")


def test_a_password_query_parameter_never_prints(make_db_url, tmp_path):
    require_pg()
    url = make_db_url("postgresql") + "?password=hunter2x&application_name=ffctl"
    env = {"FFCTL_CONFIG": str(tmp_path / "ffctl.toml")}
    for args in (["db", "current"], ["config", "show-path"], ["init"]):
        r = cli("--db", url, *args, env=env)
        assert r.exit_code == 0, r.output
        assert "password=***" in r.output
        assert_hidden(r, "hunter2x")


def test_config_errors_on_the_url_line_never_echo_it(tmp_path):
    example = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    cases = {
        # a TOML syntax error on the url line (an unescaped quote in the password)
        'url = "postgresql://ops:hun"ter2x@db.example.com/ffctl"': "invalid TOML",
        # no scheme
        'url = "ops:hunter2x@db.example.com/ffctl"': "not a database URL",
        # a bad port: a config error (exit 2), not an internal bug
        'url = "postgresql://ops:hunter2x@db.example.com:abc/ffctl"': "the port 'abc' is not a number",
    }
    for line, expected in cases.items():
        (tmp_path / "ffctl.toml").write_text(example.replace('url = "sqlite:///ffctl.db"', line, 1), encoding="utf-8")
        for args in (["config", "check"], ["order", "list"]):
            r = cli(*args, env={"FFCTL_CONFIG": str(tmp_path / "ffctl.toml")})
            assert r.exit_code == 2 and expected in r.stderr, r.output
            assert "database.url" in r.stderr or ":6: invalid TOML" in r.stderr, r.output
            assert_hidden(r, "hunter2x", "ter2x")


def test_a_bad_port_given_with_db_is_a_usage_error(tmp_path):
    r = cli(
        "--db",
        "postgresql://ops:hunter2x@127.0.0.1:abc/ffctl",
        "order",
        "list",
        env={"FFCTL_CONFIG": str(EXAMPLE_CONFIG)},
    )
    assert r.exit_code == 2 and "the port 'abc' is not a number" in r.stderr
    assert_hidden(r, "hunter2x")


# --- webhook tokens --------------------------------------------------------------------------------------


class Hooks:
    def __init__(self) -> None:
        self.count = 0
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hooks.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_tokens_never_show(workspace_with_config, tmp_path):
    hooks = Hooks()
    try:
        good = f"http://127.0.0.1:{hooks.port}/robot/send?access_token=TOKEN-GOOD-1234"
        dead = f"http://127.0.0.1:{free_port()}/services/T000/B000/TOKEN-DEAD-5678"
        ws = workspace_with_config(f"""
[defaults]
timezone = "Asia/Shanghai"
[roles.ops]
members = ["ann", "ben"]
[users.ann]
webhook = "{good}"
[users.ben]
webhook = "{dead}"
[workflows.main]
match = {{}}
nodes = ["review"]
[nodes.review]
owner = "ops"
sla = "1h"
[notify]
log = "sent.jsonl"
max_attempts = 1
""")
        from ffctl.core import outbox
        from ffctl.core.config import load_config

        cfg = load_config(ws.config_path)
        with ws.store().session(write=True) as s:
            outbox.queue(s, cfg, ["ops"], subject="late", body="body", at=NOW)
        outputs = [
            ws.run("config", "check"),
            ws.run("notify", "send", now=NOW.isoformat()),
            ws.run("notify", "send", "-f", "json", now=NOW.isoformat()),
        ]
        assert outputs[1].exit_code == 1  # ben's endpoint is down
        for fmt in ("table", "json", "csv"):
            outputs.append(ws.run("notify", "list", "-f", fmt))
        text = "".join(r.output for r in outputs) + (tmp_path / "sent.jsonl").read_text(encoding="utf-8")
        assert "TOKEN" not in text and "/robot/send" not in text and "/services/" not in text
        assert f"http://127.0.0.1:{hooks.port}/… (#" in outputs[0].stdout
        (line,) = [json.loads(x) for x in (tmp_path / "sent.jsonl").read_text(encoding="utf-8").splitlines()]
        assert line["address"].startswith(f"http://127.0.0.1:{hooks.port}/… (#")
        failed = json.loads(ws.run("notify", "list", "--failed", "-f", "json").stdout)
        assert failed[0]["last_error"].startswith("webhook http://127.0.0.1:") and "(#" in failed[0]["last_error"]
        assert hooks.count == 1
    finally:
        hooks.stop()
