"""Group chats and the signed webhook (SPEC 9.6): each vendor's format and signature checked by a
real HTTP server on 127.0.0.1 that recomputes it; in-band errors retried; rate limits spread;
digests reach a team's chat; config check masks robot URLs and names missing variables."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote_plus, unquote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import ChatRobot

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)  # the command clock: months away from the real one
DING_SECRET = "SECb6f0c2d1e4a5钉钉"  # non-ASCII on purpose: signing is over UTF-8
FEISHU_SECRET = "fs-secret-42"
HOOK_SECRET = "hook-secret"
TOKEN = "tok3n-that-must-never-show"


@pytest.fixture
def robots():
    found = {vendor: ChatRobot(vendor) for vendor in ("wecom", "dingtalk", "feishu", "slack", "webhook")}
    yield found
    for robot in found.values():
        robot.stop()


def config_text(robots, *, extra: str = "") -> str:
    return f"""
[defaults]
timezone = "UTC"
[roles.warehouse]
members = ["wu"]
dingtalk = {{ url_env = "FFCTL_WH_DINGTALK_URL", secret_env = "FFCTL_WH_DINGTALK_SECRET" }}
[roles.finance]
members = ["fei"]
feishu = {{ url = "{robots["feishu"].base}/open-apis/bot/v2/hook/{TOKEN}", secret_env = "FFCTL_FEISHU_SECRET" }}
[roles.sales]
members = []
wecom = "{robots["wecom"].base}/cgi-bin/webhook/send?key={TOKEN}"
slack = {{ url = "{robots["slack"].base}/services/T000/B000/{TOKEN}" }}
[users.wu]
[users.fei]
webhook = {{ url = "{robots["webhook"].base}/hook", secret_env = "FFCTL_HOOK_SECRET" }}
[workflows.main]
match = {{}}
nodes = ["dispatch"]
[nodes.dispatch]
owner = "warehouse"
sla = "1h"
escalation = [ {{ after = "0m", action = "remind" }} ]
[notify]
log = "sent.jsonl"
max_attempts = 5
webhook_timeout_seconds = 3
{extra}"""


@pytest.fixture
def env(monkeypatch, robots):
    monkeypatch.setenv("FFCTL_WH_DINGTALK_URL", f"{robots['dingtalk'].base}/robot/send?access_token={TOKEN}")
    monkeypatch.setenv("FFCTL_WH_DINGTALK_SECRET", DING_SECRET)
    monkeypatch.setenv("FFCTL_FEISHU_SECRET", FEISHU_SECRET)
    monkeypatch.setenv("FFCTL_HOOK_SECRET", HOOK_SECRET)
    return monkeypatch


@pytest.fixture
def cfg(tmp_path, robots, env):
    from ffctl.core.config import load_config

    path = tmp_path / "ffctl.toml"
    path.write_text(config_text(robots), encoding="utf-8")
    return load_config(path)


def queue(
    store,
    cfg,
    recipients,
    subject="SO-1 dispatch: reminder, 1h late",
    body="Order SO-1 is late.\n- line two",
    key=None,
    priority="normal",
) -> int:
    from ffctl.core import outbox

    with store.session(write=True) as s:
        return outbox.queue(s, cfg, recipients, subject=subject, body=body, at=NOW, dedupe_key=key, priority=priority)


def send(store, cfg, at=NOW):
    from ffctl.core import notify

    return notify.send(store, cfg, now=at, channels_factory=lambda c: notify._Channels(c, sleep=lambda s: None))


def rows(store) -> list[dict]:
    from ffctl.core import notify

    with store.session() as s:
        return sorted(notify.list_notifications(s, limit=0)[0], key=lambda r: r["id"])


def near_real_clock(ms: int) -> bool:
    return abs(ms / 1000 - time.time()) < 3600  # vendors refuse a timestamp an hour off theirs


# --- formats and signatures ------------------------------------------------------------------------


def test_a_role_with_a_dingtalk_robot_gets_one_signed_markdown_message_for_the_team(store, cfg, robots):
    assert queue(store, cfg, ["warehouse"]) == 2  # the team's chat, and wu (no channel: the log)
    assert [(r["recipient"], r["channel"]) for r in rows(store)] == [("warehouse", "dingtalk"), ("wu", "log")]
    report = send(store, cfg)
    assert (report.sent, report.retrying, report.failed) == (2, 0, 0)
    (post,) = robots["dingtalk"].received
    assert post["path"] == "/robot/send" and post["query"]["access_token"] == TOKEN
    assert post["json"] == {
        "msgtype": "markdown",
        "markdown": {
            "title": "SO-1 dispatch: reminder, 1h late",
            "text": "#### SO-1 dispatch: reminder, 1h late\n\nOrder SO-1 is late.\n\n- line two",
        },
    }
    stamp = post["query"]["timestamp"]
    assert near_real_clock(int(stamp))  # the real clock, not --now (March 2026)
    expected = base64.b64encode(
        hmac.new(DING_SECRET.encode(), f"{stamp}\n{DING_SECRET}".encode(), hashlib.sha256).digest()
    ).decode()
    assert post["query"]["sign"] == expected
    assert f"sign={quote_plus(expected)}" in post["raw_query"]  # urlencoded, as DingTalk documents
    assert post["headers"]["Idempotency-Key"] == f"ffctl-notification-{rows(store)[0]['id']}"
    # where it went is shown without the token: send report, notify list's log file
    assert TOKEN not in json.dumps([i.get("address") for i in report.items])
    lines = (cfg.directory / "sent.jsonl").read_text(encoding="utf-8")
    assert TOKEN not in lines and '"channel": "dingtalk"' in lines


def test_feishu_is_a_signed_post_message_and_wecom_and_slack_their_own_formats(store, cfg, robots):
    queue(store, cfg, ["finance", "sales"], subject="[ffctl] 2 orders need you", priority="high")
    report = send(store, cfg)
    assert report.sent == 4, report.items  # finance's chat and fei's webhook; sales: wecom and slack
    (post,) = robots["feishu"].received
    body = post["json"]
    assert near_real_clock(int(body["timestamp"]) * 1000)
    key = f"{body['timestamp']}\n{FEISHU_SECRET}".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert body["msg_type"] == "post"
    post_zh = body["content"]["post"]["zh_cn"]
    assert post_zh["title"] == "‼ [ffctl] 2 orders need you"  # high priority stands out
    assert post_zh["content"] == [
        [{"tag": "text", "text": "Order SO-1 is late."}],
        [{"tag": "text", "text": "- line two"}],
    ]
    (post,) = robots["wecom"].received
    assert post["query"] == {"key": TOKEN}
    assert post["json"] == {
        "msgtype": "markdown",
        "markdown": {"content": "**‼ [ffctl] 2 orders need you**\nOrder SO-1 is late.\n- line two"},
    }
    (post,) = robots["slack"].received
    assert post["json"] == {"text": "*‼ [ffctl] 2 orders need you*\nOrder SO-1 is late.\n- line two"}


def test_the_plain_webhook_is_signed_over_its_body_bytes(store, cfg, robots):
    queue(store, cfg, ["fei"])
    assert send(store, cfg).sent == 1
    (post,) = robots["webhook"].received
    expected = hmac.new(HOOK_SECRET.encode(), post["raw"], hashlib.sha256).hexdigest()
    assert post["headers"]["X-Ffctl-Signature"] == f"sha256={expected}"
    (row,) = rows(store)
    assert post["headers"]["Idempotency-Key"] == f"ffctl-notification-{row['id']}"
    assert post["json"]["id"] == row["id"] and post["json"]["recipient"] == "fei"


def test_a_webhook_without_secret_env_is_not_signed(tmp_path, store, robots, env):
    from ffctl.core.config import load_config

    path = tmp_path / "plain.toml"
    path.write_text(f'[users.ann]\nwebhook = "{robots["webhook"].base}/hook"\n', encoding="utf-8")
    cfg = load_config(path)
    queue(store, cfg, ["ann"])
    assert send(store, cfg).sent == 1
    assert "X-Ffctl-Signature" not in robots["webhook"].received[0]["headers"]


def test_a_long_digest_is_cut_to_the_robots_limit_on_a_character_boundary(store, cfg, robots):
    body = "\n".join(f"- SO-{i:06d} dispatch: 超时 1h" for i in range(400))  # about 12 KB
    queue(store, cfg, ["sales"], body=body)
    assert send(store, cfg).sent == 2
    content = robots["wecom"].received[0]["json"]["markdown"]["content"]
    assert len(content.encode("utf-8")) <= 4096 and content.endswith("…")
    assert "\ufffd" not in content


# --- vendor errors, outages, rate limits -------------------------------------------------------------


def test_an_in_band_error_leaves_the_message_pending_until_the_robot_recovers(store, cfg, robots):
    robot = robots["dingtalk"]
    robot.answer = (200, b'{"errcode":310000,"errmsg":"sign not match, more: [https://ding-doc.dingtalk.com]"}')
    queue(store, cfg, ["warehouse"])
    report = send(store, cfg)
    assert (report.sent, report.retrying) == (1, 1)  # wu's log line went; the chat did not
    (item,) = [i for i in report.items if i["channel"] == "dingtalk"]
    assert "refused the message: error 310000 sign not match" in item["error"]
    assert TOKEN not in item["error"]
    (row,) = [r for r in rows(store) if r["channel"] == "dingtalk"]
    assert (row["status"], row["attempts"], row["next_attempt_at"]) == ("pending", 1, NOW + timedelta(minutes=2))
    robot.answer = ChatRobot.OK["dingtalk"]
    assert send(store, cfg, NOW + timedelta(minutes=2)).sent == 1
    (row,) = [r for r in rows(store) if r["channel"] == "dingtalk"]
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)
    assert len(robot.delivered()) == 1 and len(robot.received) == 2
    assert send(store, cfg, NOW + timedelta(hours=1)).items == []  # delivered once


@pytest.mark.parametrize(
    "answer",
    [
        (200, b'{"code":19021,"data":{},"msg":"sign match fail or timestamp is not within one hour"}'),
        (200, b'{"StatusCode":9499,"StatusMessage":"Bad Request"}'),
        (200, b"<html>gateway</html>"),
    ],
)
def test_feishu_errors_in_an_http_200_are_failures(store, cfg, robots, answer):
    robots["feishu"].answer = answer
    queue(store, cfg, ["finance"])
    report = send(store, cfg)
    (item,) = [i for i in report.items if i["channel"] == "feishu"]
    assert (
        item["status"] == "pending" and item["attempts"] == 1 and item["error"].startswith("feishu http://127.0.0.1:")
    )


def test_dingtalk_takes_twenty_a_minute_the_rest_wait_for_the_next_run(store, cfg, robots):
    for i in range(25):
        queue(store, cfg, ["warehouse"], subject=f"n{i}", key=f"k{i}")
    report = send(store, cfg)
    assert report.deferred == 5 and len(robots["dingtalk"].received) == 20
    waiting = [r for r in rows(store) if r["channel"] == "dingtalk" and r["status"] == "pending"]
    assert len(waiting) == 5
    assert {(r["attempts"], r["next_attempt_at"]) for r in waiting} == {(0, NOW + timedelta(minutes=1))}
    assert send(store, cfg, NOW + timedelta(seconds=30)).items == []  # not yet
    report = send(store, cfg, NOW + timedelta(minutes=1))
    assert (report.sent, report.deferred) == (5, 0)
    assert sorted(p["json"]["markdown"]["title"] for p in robots["dingtalk"].received) == sorted(
        f"n{i}" for i in range(25)
    )


def test_a_robot_that_says_too_fast_defers_without_spending_attempts(store, cfg, robots):
    robots["dingtalk"].answer = (200, b'{"errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}')
    for i in range(3):
        queue(store, cfg, ["warehouse"], subject=f"n{i}", key=f"k{i}")
    report = send(store, cfg)
    assert report.deferred == 3 and report.retrying == 0
    assert len(robots["dingtalk"].received) == 1  # the first answer holds the others back in this run
    robots["dingtalk"].answer = ChatRobot.OK["dingtalk"]
    assert send(store, cfg, NOW + timedelta(minutes=1)).sent == 3
    assert {r["attempts"] for r in rows(store) if r["channel"] == "dingtalk"} == {1}


def test_slack_http_429_is_deferred_by_retry_after(store, cfg, robots):
    robots["slack"].answer = (429, b"rate_limited")
    queue(store, cfg, ["sales"])
    report = send(store, cfg)
    (item,) = [i for i in report.items if i["channel"] == "slack"]
    assert (
        item["status"] == "pending" and item["attempts"] == 0 and item["next_attempt_at"] == NOW + timedelta(minutes=1)
    )


def test_a_missing_url_variable_is_retried_until_it_is_set(store, cfg, robots, env):
    env.delenv("FFCTL_WH_DINGTALK_URL")
    queue(store, cfg, ["warehouse"])
    (item,) = [i for i in send(store, cfg).items if i["channel"] == "dingtalk"]
    assert item["error"] == (
        "the environment variable FFCTL_WH_DINGTALK_URL (the dingtalk URL of warehouse) is not set"
    )
    env.setenv("FFCTL_WH_DINGTALK_URL", f"{robots['dingtalk'].base}/robot/send?access_token={TOKEN}")
    assert send(store, cfg, NOW + timedelta(minutes=2)).sent == 1


def test_slack_refusals_say_what_slack_said(store, cfg, robots):
    robots["slack"].answer = (400, b"invalid_payload")
    queue(store, cfg, ["sales"])
    (item,) = [i for i in send(store, cfg).items if i["channel"] == "slack"]
    assert item["error"].endswith("answered HTTP 400: invalid_payload") and item["attempts"] == 1


def test_a_url_variable_that_is_not_http_fails_without_showing_its_token(store, cfg, env):
    env.setenv("FFCTL_WH_DINGTALK_URL", f"ftp://oapi.dingtalk.com/robot/send?access_token={TOKEN}")
    queue(store, cfg, ["warehouse"])
    (item,) = [i for i in send(store, cfg).items if i["channel"] == "dingtalk"]
    assert "not an http(s) URL" in item["error"] and TOKEN not in item["error"]


# --- digests reach the team's chat ----------------------------------------------------------------------


def test_a_sweep_sends_the_teams_chat_one_digest(workspace_with_config, robots, env):
    import sqlalchemy as sa

    from ffctl.core import workflow
    from ffctl.core.config import load_config
    from ffctl.core.models import Customer, Order

    ws = workspace_with_config(config_text(robots))
    cfg, store = load_config(ws.config_path), ws.store()
    ids = [f"SO-{i:06d}" for i in range(3)]
    try:
        with store.session(write=True) as s:
            s.execute(sa.insert(Customer), [{"customer": "c1", "name": "客户一"}])
            s.execute(
                sa.insert(Order),
                [{"order_id": i, "customer": "c1", "created_at": NOW - timedelta(hours=3)} for i in ids],
            )
            workflow.enter_orders(s, cfg, workflow.order_facts(s, ids), actor="test")
    finally:
        store.dispose()
    r = ws.run("sla", "sweep", "-f", "json", now=NOW.isoformat())
    assert r.exit_code == 0, r.output
    (post,) = robots["dingtalk"].received
    markdown = post["json"]["markdown"]
    assert markdown["title"] == "[ffctl] 3 orders need you: 3 breached"
    assert all(oid in markdown["text"] for oid in ids)


# --- config check ----------------------------------------------------------------------------------------


def test_config_check_masks_robot_urls_and_names_the_variables(workspace_with_config, robots, env):
    ws = workspace_with_config(config_text(robots))
    env.delenv("FFCTL_FEISHU_SECRET")
    r = ws.run("config", "check")
    assert r.exit_code == 0, r.output
    assert TOKEN not in r.output and DING_SECRET not in r.output
    assert "group chat dingtalk $FFCTL_WH_DINGTALK_URL, signed with $FFCTL_WH_DINGTALK_SECRET" in r.stdout
    assert "wecom http://127.0.0.1:" in r.stdout and "/… (#" in r.stdout
    assert "roles.finance.feishu.secret_env: the environment variable FFCTL_FEISHU_SECRET is not set here" in r.stderr


@pytest.mark.parametrize(
    "line, problem",
    [
        (
            'dingtalk = { url_env = "FFCTL_X", secret = "SECabc" }',
            "roles.ops.dingtalk.secret: secrets never go in the config file",
        ),
        (
            'dingtalk = { url_env = "https://oapi.dingtalk.com/robot/send?access_token=tok3n-that-must-never-show" }',
            "roles.ops.dingtalk.url_env: must be the name of an environment variable that holds the URL",
        ),
        (
            'wecom = { url_env = "FFCTL_X", secret_env = "FFCTL_Y" }',
            "roles.ops.wecom.secret_env: wecom does not sign its requests",
        ),
        ('slack = "ftp://example.com/tok3n-that-must-never-show"', "roles.ops.slack.url: ftp://example.com/… (#"),
        ("feishu = {}", "roles.ops.feishu: missing url_env (or url)"),
        (
            'feishu = { url = "https://x.example/a", url_env = "FFCTL_X" }',
            "roles.ops.feishu: give url or url_env, not both",
        ),
        ("dingtalk = 3", "roles.ops.dingtalk: expected a URL in quotes or a table"),
    ],
)
def test_config_check_refuses_bad_channels_without_echoing_secrets(workspace_with_config, line, problem):
    ws = workspace_with_config(f"[roles.ops]\nmembers = []\n{line}\n")
    r = ws.run("config", "check")
    assert r.exit_code == 2, r.output
    assert problem in r.stderr
    assert TOKEN not in r.output and "SECabc" not in r.output


# --- pure parts, over many inputs ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=3000), st.integers(min_value=20, max_value=5000))
def test_a_cut_message_fits_the_limit_in_whole_characters(text, limit):
    from ffctl.core.channels import CUT_NOTE, _cut

    cut = _cut(text, limit)
    assert cut == text or len(cut.encode("utf-8")) <= limit
    assert cut == text or (cut.endswith(CUT_NOTE) and text.startswith(cut[: -len(CUT_NOTE)]))


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=40), st.integers(min_value=1_600_000_000_000, max_value=2_000_000_000_000))
def test_dingtalk_signing_matches_its_documented_recipe(secret, ms):
    from ffctl.core.channels import Message, build

    request = build("dingtalk", Message(1, "s", "b", "normal", {}), "http://h/robot/send?access_token=t", secret, ms)
    query = dict(part.split("=", 1) for part in request.url.split("?", 1)[1].split("&"))
    assert query["timestamp"] == str(ms)
    digest = hmac.new(secret.encode(), f"{ms}\n{secret}".encode(), hashlib.sha256).digest()
    assert unquote_plus(query["sign"]) == base64.b64encode(digest).decode()
