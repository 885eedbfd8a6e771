"""Chat and webhook channels: each vendor's documented message format, signing and answer.

A notification (subject, body, priority) becomes one HTTP POST of JSON:

- ``webhook``: ffctl's own JSON (id, recipient, subject, body, ...); with ``secret_env`` the
  header ``X-Ffctl-Signature: sha256=HEX``, HMAC-SHA256 of the body bytes with the secret.
- ``wecom`` (企业微信 group robot): ``{"msgtype": "markdown", "markdown": {"content": ...}}``;
  the answer ``{"errcode": 0, "errmsg": "ok"}``; content at most 4096 bytes; 20 messages a minute.
- ``dingtalk`` (钉钉 custom robot): ``{"msgtype": "markdown", "markdown": {"title", "text"}}``;
  signed by ``&timestamp=MS&sign=S`` on the URL, S = urlencode(base64(HMAC-SHA256(key=secret,
  msg=MS + "\\n" + secret))); the answer ``{"errcode": 0}``; 20 messages a minute per robot.
- ``feishu`` (飞书 custom bot): ``{"msg_type": "post", "content": {"post": {"zh_cn": {"title",
  "content"}}}}``; signed by ``"timestamp": "S"`` and ``"sign"`` in the body, sign =
  base64(HMAC-SHA256(key=S + "\\n" + secret, msg=b"")); the answer ``{"code": 0}`` (older
  bots: ``{"StatusCode": 0}``); 100 messages a minute, 5 a second.
- ``slack`` (incoming webhook): ``{"text": ...}`` in mrkdwn; the answer is the text ``ok``;
  about one message a second.

Vendors report most errors inside an HTTP 200 (a bad signature, a stale timestamp, a keyword
the robot requires): ``answer_problem`` reads them, and the sender retries like any failure.
Signing timestamps come from the real clock (``time.time``), never from ``--now``: vendors
refuse a timestamp more than an hour from theirs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote_plus

from ffctl.i18n import _

CUT_NOTE = "\n\n…"  # a message cut to the vendor's size limit ends so


@dataclass(frozen=True)
class Message:
    """What is posted, before the vendor's wording of it."""

    id: int
    subject: str
    body: str
    priority: str
    ffctl_json: dict  # the plain webhook's payload


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict


@dataclass(frozen=True)
class Vendor:
    payload: Callable[[Message], dict]
    sign: Callable[[str, dict, bytes | None, str, int], Request] | None  # (url, payload, body, secret, now_ms)
    answer: Callable[[int, bytes], str | None]  # (status, body) -> why it failed, or None
    per_minute: int | None = None  # messages one robot takes a minute; more are deferred, never dropped
    interval: float = 0.0  # seconds between two messages to one robot within a run
    throttled: frozenset = frozenset()  # in-band codes that mean "too fast": deferred, not failed


# --- payloads ------------------------------------------------------------------------------------


def _cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` UTF-8 bytes, cut on a character boundary with a mark."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    room = limit - len(CUT_NOTE.encode("utf-8"))
    return raw[:room].decode("utf-8", "ignore").rstrip() + CUT_NOTE


def _headline(message: Message) -> str:
    return ("‼ " if message.priority == "high" else "") + message.subject


def wecom_payload(message: Message) -> dict:
    text = f"**{_headline(message)}**\n{message.body}"
    return {"msgtype": "markdown", "markdown": {"content": _cut(text, 4096)}}


def dingtalk_payload(message: Message) -> dict:
    # DingTalk's markdown joins single line breaks: a list item per line needs a blank line
    body = "\n\n".join(line for line in message.body.split("\n") if line.strip())
    return {
        "msgtype": "markdown",
        "markdown": {
            "title": _cut(_headline(message), 200),
            "text": _cut(f"#### {_headline(message)}\n\n{body}", 18000),
        },
    }


def feishu_payload(message: Message) -> dict:
    lines = [[{"tag": "text", "text": line}] for line in _cut(message.body, 18000).split("\n")]
    return {"msg_type": "post", "content": {"post": {"zh_cn": {"title": _headline(message), "content": lines}}}}


def slack_payload(message: Message) -> dict:
    return {"text": _cut(f"*{_headline(message)}*\n{message.body}", 39000)}


def webhook_payload(message: Message) -> dict:
    return message.ffctl_json


# --- signing -------------------------------------------------------------------------------------


def _json(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The ``sign`` query value: urlencoded base64 HMAC-SHA256 of "MS\\nsecret" keyed by the secret."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest).decode("ascii"))


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """The body's ``sign``: base64 HMAC-SHA256 keyed by "S\\nsecret" over an empty message."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def webhook_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _sign_webhook(url: str, payload: dict, body: bytes | None, secret: str, now_ms: int) -> Request:
    body = body if body is not None else _json(payload)
    return Request(url, body, {"X-Ffctl-Signature": webhook_signature(secret, body)})


def _sign_dingtalk(url: str, payload: dict, body: bytes | None, secret: str, now_ms: int) -> Request:
    joiner = "&" if "?" in url else "?"
    return Request(
        f"{url}{joiner}timestamp={now_ms}&sign={dingtalk_sign(secret, now_ms)}",
        body if body is not None else _json(payload),
        {},
    )


def _sign_feishu(url: str, payload: dict, body: bytes | None, secret: str, now_ms: int) -> Request:
    seconds = now_ms // 1000
    return Request(url, _json({"timestamp": str(seconds), "sign": feishu_sign(secret, seconds), **payload}), {})


# --- answers -------------------------------------------------------------------------------------


def _read_json(body: bytes) -> dict | None:
    try:
        found = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def in_band_code(body: bytes) -> tuple[object, str] | None:
    """(code, message) of a vendor's JSON answer that is not 0 (``errcode``, ``code`` or
    ``StatusCode``); None for a success or an answer without a code."""
    found = _read_json(body)
    if found is None:
        return None
    for code_key, text_key in (("errcode", "errmsg"), ("code", "msg"), ("StatusCode", "StatusMessage")):
        if code_key in found:
            code = found[code_key]
            if code in (0, "0"):
                return None
            return code, str(found.get(text_key) or "")[:200]
    return None


def _answer_json(status: int, body: bytes) -> str | None:
    if _read_json(body) is None:
        return _("answered HTTP {status} without the JSON its API returns").format(status=status)
    found = in_band_code(body)
    if found is not None:
        code, text = found
        return _("refused the message: error {code} {text}").format(code=code, text=text).rstrip()
    return None


def _answer_slack(status: int, body: bytes) -> str | None:
    text = body.decode("utf-8", "replace").strip()
    if text and text != "ok":
        return _("refused the message: {text}").format(text=text[:200])
    return None


def _answer_http(status: int, body: bytes) -> str | None:
    return None


VENDORS: dict[str, Vendor] = {
    "webhook": Vendor(webhook_payload, _sign_webhook, _answer_http),
    "wecom": Vendor(wecom_payload, None, _answer_json, per_minute=20, throttled=frozenset({45009})),
    "dingtalk": Vendor(dingtalk_payload, _sign_dingtalk, _answer_json, per_minute=20, throttled=frozenset({130101})),
    "feishu": Vendor(
        feishu_payload, _sign_feishu, _answer_json, per_minute=100, interval=0.2, throttled=frozenset({11232, 230020})
    ),
    "slack": Vendor(slack_payload, None, _answer_slack, per_minute=60, interval=1.0),
}


def build(channel: str, message: Message, url: str, secret: str | None, now_ms: int) -> Request:
    """The request that delivers ``message`` on ``channel`` to ``url``, signed when ``secret``."""
    vendor = VENDORS[channel]
    payload = vendor.payload(message)
    if secret and vendor.sign is not None:
        request = vendor.sign(url, payload, None, secret, now_ms)
    else:
        request = Request(url, _json(payload), {})
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "ffctl",
        "X-Ffctl-Notification-Id": str(message.id),
        "Idempotency-Key": f"ffctl-notification-{message.id}",
        **request.headers,
    }
    return Request(request.url, request.body, headers)
