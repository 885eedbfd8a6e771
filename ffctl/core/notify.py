"""Delivering the outbox: email (SMTP), webhook and group chats (HTTP POST of JSON), the log file.

Rows are written by core/outbox.py in the transaction of the event that causes them; this
module sends the pending ones whose ``next_attempt_at`` has come. Each batch is claimed in a
transaction that is still open while its rows are sent and is committed with their outcome:
``FOR UPDATE SKIP LOCKED`` on PostgreSQL (two senders take disjoint rows), the write lock on
SQLite (senders take turns), so two ffctl processes never send one row twice.

Delivery is at least once: a sender killed after a send but before its commit leaves the row
pending, and the next sender sends it again. Webhooks carry the row id in the
``X-Ffctl-Notification-Id`` header (and ``Idempotency-Key``) so a receiver can drop a repeat.

Language: a notification is worded when it is queued (core/outbox.py), in the language of the
process that queues it, which is ``[defaults] language`` when set: one store, one language for
its alerts (cron's LANG decides only when the config does not). Delivery only carries the text;
its own errors (``last_error``) are in the sender's language.

Chats (wecom, dingtalk, feishu, slack) are posted in their vendor's format (core/channels.py);
a vendor's error inside an HTTP 200 is a failed send like any other. A robot's rate limit is
kept by spreading: past a vendor's messages a minute for one URL in a run, or when the vendor
says "too fast" (in band or HTTP 429), the row is *deferred* to a later run: still pending, no
attempt counted, never dropped.

A failed send counts an attempt, keeps the error, and is retried after 2^attempts minutes;
after ``[notify] max_attempts`` the row is ``failed`` (``ffctl notify list --failed``). Whatever
goes wrong while one row is delivered is that row's failed attempt: the rows sent before and
after it in the batch are recorded as sent, never sent again.

Mail: headers built from data are one line (``core/text.header_value``), so an order id holding
CR/LF cannot add a ``Bcc:``. TLS verifies the server's certificate and host name (the system's
CAs, or ``ca_file``); a password is sent only over verified TLS (``starttls`` or ``tls``), or in
clear to a relay on this machine when ``plain_login_on_loopback = true`` says so.
Every successful send, whatever its channel, is appended to the ``[notify] log`` file as one
JSON line; a ``log`` row (a person with no channel) is delivered by that line alone.
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ffctl.core import channels as vendors
from ffctl.core.clock import iso
from ffctl.core.models import Notification
from ffctl.core.outbox import update_notes
from ffctl.core.paging import count_matches, fetch_page
from ffctl.core.secrets import mask_endpoint
from ffctl.core.store import is_postgresql
from ffctl.core.text import header_value
from ffctl.i18n import _

if TYPE_CHECKING:
    from ffctl.core.config import Config
    from ffctl.core.store import Store

NOTE = Notification.__table__
BATCH = 20  # rows per claim: bounds how long a SQLite sender holds the write lock
SMTP_TIMEOUT_SECONDS = 10
STATUSES = ("pending", "sent", "failed")


class DeliveryError(Exception):
    """A send failed; the message says why in one line."""


class Deferred(DeliveryError):
    """Not sent now because of a rate limit: tried again at ``after`` seconds past now, no attempt counted."""

    def __init__(self, message: str, after: float = 60.0) -> None:
        super().__init__(message)
        self.after = after


@dataclass
class SendReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    deferred: int = 0  # held back by a rate limit, sent by a later run
    items: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "sent": self.sent,
            "retrying": self.retrying,
            "failed": self.failed,
            "deferred": self.deferred,
            "items": list(self.items),
        }


# --- channels --------------------------------------------------------------------------------------


class _Channels:
    """One delivery run's connections (one SMTP session reused across a batch)."""

    def __init__(
        self, cfg: Config, *, wall_clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.cfg = cfg
        self._smtp: smtplib.SMTP | None = None
        # endpoints that could not be reached in this run: their other rows fail at once, so
        # one dead server costs one timeout per run, not one per notification
        self._down: dict[str, str] = {}
        self._posted: dict[str, int] = {}  # URL -> messages posted to it in this run
        self._last_post: dict[str, float] = {}  # URL -> monotonic time of its last post
        self._throttled: dict[str, float] = {}  # URL -> seconds the vendor asked us to wait
        self.wall_clock, self.sleep = wall_clock, sleep  # signing timestamps: the real clock, never --now

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass
            self._smtp = None

    def _smtp_session(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        email = self.cfg.notify.email
        if email is None:
            raise DeliveryError(_("no email server: set [notify] email = { host = ..., sender = ... } in the config"))
        if "smtp" in self._down:
            raise DeliveryError(self._down["smtp"])
        smtp: smtplib.SMTP | None = None
        try:
            context = ssl.create_default_context(cafile=email.ca_file)  # checks the certificate and host name
            if email.tls:
                smtp = smtplib.SMTP_SSL(email.host, email.port, timeout=SMTP_TIMEOUT_SECONDS, context=context)
            else:
                smtp = smtplib.SMTP(email.host, email.port, timeout=SMTP_TIMEOUT_SECONDS)
                if email.starttls:
                    smtp.starttls(context=context)
            if email.password_env:
                if not email.login_allowed():
                    raise DeliveryError(
                        _(
                            "SMTP {host}:{port}: refusing to send the password without verified TLS; "
                            "set starttls = true or tls = true in [notify] email"
                        ).format(host=email.host, port=email.port)
                    )
                password = os.environ.get(email.password_env)
                if password is None:
                    raise DeliveryError(
                        _("the SMTP password variable {variable} is not set").format(variable=email.password_env)
                    )
                try:
                    smtp.login(email.username or email.sender, password)
                except UnicodeEncodeError:  # smtplib sends AUTH as ASCII
                    raise DeliveryError(
                        _(
                            "SMTP {host}:{port}: the user name or the password in {variable} is not "
                            "ASCII text, which SMTP login cannot carry"
                        ).format(host=email.host, port=email.port, variable=email.password_env)
                    ) from None
        except DeliveryError as exc:
            _quit(smtp)
            self._down["smtp"] = str(exc)  # the same for every row of this run
            raise
        except (smtplib.SMTPException, OSError) as exc:
            _quit(smtp)
            self._down["smtp"] = f"SMTP {email.host}:{email.port}: {_one_line(exc)}"
            raise DeliveryError(self._down["smtp"]) from None
        self._smtp = smtp
        return smtp

    def email(self, row, address: str) -> None:
        email = self.cfg.notify.email
        msg = EmailMessage()
        msg["From"] = header_value(email.sender if email else "ffctl")
        msg["To"] = header_value(address)
        msg["Subject"] = header_value(row.subject)
        msg["X-Ffctl-Notification-Id"] = str(row.id)
        if row.priority == "high":
            msg["X-Priority"] = "1"
        msg.set_content(row.body)
        smtp = self._smtp_session()
        try:
            smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            self.close()  # the session may be broken: the next row opens a fresh one
            raise DeliveryError(f"SMTP: {_one_line(exc)}") from None

    def post(self, row, channel: str, target) -> str:
        """POST ``row`` on an HTTP channel (webhook or a chat robot); returns the URL. Raises
        DeliveryError, or Deferred when the robot's rate limit says later."""
        url, secret = self._endpoint(row, channel, target)
        shown = f"{channel} {mask_endpoint(url)}"
        vendor = vendors.VENDORS[channel]
        self._pace(url, vendor, shown)
        message = vendors.Message(row.id, row.subject, row.body, row.priority, _payload(row, self.cfg.timezone))
        request = vendors.build(channel, message, url, secret, int(self.wall_clock() * 1000))
        status, answer = self._exchange(request, url, vendor, shown)
        if channel != "webhook":
            self._throttled_by(vendors.in_band_code(answer), url, vendor, shown)
        problem = vendor.answer(status, answer)
        if problem is not None:
            raise DeliveryError(f"{shown} {problem}")
        return url

    def _endpoint(self, row, channel: str, target) -> tuple[str, str | None]:
        """(URL, signing secret) of a recipient's channel, from the config and its variables."""
        url = target.resolve_url() if target is not None else None
        if url is None:
            if target is None:
                raise DeliveryError(
                    _("{recipient} has no {channel} in the config").format(recipient=row.recipient, channel=channel)
                )
            raise DeliveryError(
                _("the environment variable {variable} (the {channel} URL of {recipient}) is not set").format(
                    variable=target.url_env, channel=channel, recipient=row.recipient
                )
            )
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):  # urllib's own error would quote the token
            raise DeliveryError(
                _("{channel} {url} of {recipient}: not an http(s) URL").format(
                    channel=channel, url=mask_endpoint(url), recipient=row.recipient
                )
            )
        secret = target.secret()
        if target.secret_env and not secret:
            raise DeliveryError(
                _(
                    "the environment variable {variable} (the {channel} signing secret of {recipient}) is not set"
                ).format(variable=target.secret_env, channel=channel, recipient=row.recipient)
            )
        return url, secret

    def _pace(self, url: str, vendor, shown: str) -> None:
        """Keep a robot's rate limit: defer past its messages a minute in this run, or when it said
        too fast; wait out its interval between two messages."""
        if url in self._down:
            raise DeliveryError(self._down[url])
        if url in self._throttled:
            raise Deferred(
                _("{where} asked to slow down: sent in a later run").format(where=shown), self._throttled[url]
            )
        if vendor.per_minute is not None and self._posted.get(url, 0) >= vendor.per_minute:
            raise Deferred(
                _("{where} takes {count} messages a minute: sent in a later run").format(
                    where=shown, count=vendor.per_minute
                )
            )
        if vendor.interval and url in self._last_post:
            wait = self._last_post[url] + vendor.interval - time.monotonic()
            if wait > 0:
                self.sleep(wait)
        self._posted[url] = self._posted.get(url, 0) + 1
        self._last_post[url] = time.monotonic()

    def _exchange(self, request, url: str, vendor, shown: str) -> tuple[int, bytes]:
        """POST the request; (status, answer) of a 2xx. Raises DeliveryError or Deferred."""
        http = urllib.request.Request(request.url, data=request.body, method="POST", headers=request.headers)
        try:
            with urllib.request.urlopen(http, timeout=self.cfg.notify.webhook_timeout_seconds) as response:
                status, answer = response.status, response.read(65536)
        except urllib.error.HTTPError as exc:
            answer = exc.read(65536) if exc.fp is not None else b""
            if exc.code == 429:
                self._throttled[url] = _retry_after(exc.headers.get("Retry-After"))
                raise Deferred(
                    _("{where} answered HTTP 429 (too many requests): sent in a later run").format(where=shown),
                    self._throttled[url],
                ) from None
            found = vendors.in_band_code(answer)
            self._throttled_by(found, url, vendor, shown)  # Feishu: a rate limit as HTTP 400 with a code
            raise DeliveryError(
                _("{where} answered HTTP {status}{detail}").format(
                    where=shown, status=exc.code, detail=_answer_detail(found, answer)
                )
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc.__class__.__name__  # never str(ValueError): it quotes the URL
            self._down[url] = f"{shown}: {_one_line(reason)}"
            raise DeliveryError(self._down[url]) from None
        if not 200 <= status < 300:
            raise DeliveryError(
                _("{where} answered HTTP {status}{detail}").format(where=shown, status=status, detail="")
            )
        return status, answer

    def _throttled_by(self, found: tuple | None, url: str, vendor, shown: str) -> None:
        if found is not None and found[0] in vendor.throttled:
            self._throttled[url] = 60.0
            raise Deferred(
                _("{where} said too fast (error {code}): sent in a later run").format(where=shown, code=found[0])
            )

    def log(self, row, address: str | None, at: datetime) -> None:
        """Append the sent notification to the log file as one JSON line (one write call)."""
        path = self.cfg.notify.log
        if not path:
            return
        line = (
            json.dumps(
                {**_payload(row, self.cfg.timezone), "address": address, "sent_at": iso(at, self.cfg.timezone)},
                ensure_ascii=False,
            )
            + "\n"
        )
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # it holds customer data
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def deliver(self, row, at: datetime) -> str | None:
        """Send one row on its channel; returns the address used. Raises DeliveryError."""
        user = self.cfg.users.get(row.recipient)
        address = None
        if row.channel == "email":
            address = user.email if user else None
            if not address:
                raise DeliveryError(_("{recipient} has no email address in the config").format(recipient=row.recipient))
            self.email(row, address)
        elif row.channel in vendors.VENDORS:
            address = self.post(row, row.channel, self.cfg.channel_target(row.recipient, row.channel))
        elif row.channel != "log":
            raise DeliveryError(_("unknown channel {channel}").format(channel=repr(row.channel)))
        try:
            self.log(row, _shown_address(row.channel, address), at)
        except OSError as exc:
            if row.channel == "log":
                raise DeliveryError(
                    _("cannot append to {path}: {reason}").format(path=self.cfg.notify.log, reason=exc.strerror or exc)
                ) from None
            # the message went out; a log write failure must not make it go out twice
        return address


def _payload(row, tz: str) -> dict:
    return {
        "id": row.id,
        "recipient": row.recipient,
        "channel": row.channel,
        "subject": row.subject,
        "body": row.body,
        "priority": row.priority,
        "order_id": row.order_id,
        "created_at": iso(row.created_at, tz),
    }


def _answer_detail(found: tuple | None, answer: bytes) -> str:
    """What a refusing server said, in a few words: a vendor's code, or Slack's one-word text."""
    if found is not None:
        return _(": error {code} {text}").format(code=found[0], text=found[1]).rstrip()
    text = answer.decode("utf-8", "replace").strip()
    return f": {text}" if text and len(text) <= 80 and text.isprintable() and "<" not in text else ""


def _retry_after(header: str | None) -> float:
    """Seconds a 429's Retry-After asks for (a number; a date or nothing: a minute)."""
    try:
        return min(max(float(header or ""), 1.0), 3600.0)
    except ValueError:
        return 60.0


def _quit(smtp: smtplib.SMTP | None) -> None:
    if smtp is None:
        return
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _shown_address(channel: str, address: str | None) -> str | None:
    """Where a row went, as logs and reports show it: a webhook's token never shows."""
    if not address:
        return None
    return mask_endpoint(address) if channel in vendors.VENDORS else address


def _one_line(exc: object) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0][:300]


# --- sending -------------------------------------------------------------------------------------


def backoff(attempts: int) -> timedelta:
    """Wait before the next try after ``attempts`` failures: 2, 4, 8, ... minutes."""
    return timedelta(minutes=2**attempts)


def _claim(session: Session, now: datetime, limit: int) -> Sequence[sa.Row]:
    stmt = (
        sa.select(NOTE)
        .where(NOTE.c.status == "pending", NOTE.c.next_attempt_at <= now)
        .order_by(NOTE.c.next_attempt_at, NOTE.c.id)
        .limit(limit)
    )  # oldest first, along ix_notification_pending
    if is_postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return session.execute(stmt).all()


def send(
    store: Store,
    cfg: Config,
    *,
    now: datetime,
    limit: int | None = None,
    batch: int = BATCH,
    channels_factory: Callable[[Config], _Channels] = _Channels,
) -> SendReport:
    """Deliver pending notifications due by ``now``; at most ``limit`` rows (None: all due)."""
    report = SendReport()
    channels = channels_factory(cfg)
    done = 0
    try:
        while limit is None or done < limit:
            with store.session(write=True) as session:
                # a row tried here is sent, failed or due later than now: never claimed twice in a run
                rows = _claim(session, now, batch if limit is None else min(batch, limit - done))
                if not rows:
                    break
                updates = [_attempt(channels, cfg, row, now, report) for row in rows]
                done += len(rows)
                update_notes(
                    session,
                    updates,
                    status="st",
                    attempts="at",
                    last_error="err",
                    next_attempt_at="nxt",
                    sent_at="sent",
                )
    finally:
        channels.close()
    return report


def _attempt(channels: _Channels, cfg: Config, row, now: datetime, report: SendReport) -> dict:
    try:
        address = channels.deliver(row, now)
    except Deferred as exc:  # a rate limit: later, and no attempt spent
        report.deferred += 1
        nxt = now + timedelta(seconds=exc.after)
        report.items.append(
            {
                "id": row.id,
                "recipient": row.recipient,
                "channel": row.channel,
                "status": "pending",
                "attempts": row.attempts,
                "next_attempt_at": nxt,
                "error": str(exc),
            }
        )
        return {"nid": row.id, "st": "pending", "at": row.attempts, "err": str(exc), "nxt": nxt, "sent": None}
    except Exception as exc:  # noqa: BLE001 - one row's failure is that row's attempt, never its batch's
        attempts = row.attempts + 1
        if isinstance(exc, DeliveryError):
            error = str(exc)
        else:
            channels.close()  # a session in an unknown state: the next row opens a fresh one
            error = _("unexpected {error}: {message}").format(error=exc.__class__.__name__, message=_one_line(exc))
        if attempts >= cfg.notify.max_attempts:
            report.failed += 1
            status, nxt = "failed", None
        else:
            report.retrying += 1
            status, nxt = "pending", now + backoff(attempts)
        report.items.append(
            {
                "id": row.id,
                "recipient": row.recipient,
                "channel": row.channel,
                "status": status,
                "attempts": attempts,
                "next_attempt_at": nxt,
                "error": error,
            }
        )
        return {"nid": row.id, "st": status, "at": attempts, "err": error, "nxt": nxt, "sent": None}
    report.sent += 1
    report.items.append(
        {
            "id": row.id,
            "recipient": row.recipient,
            "channel": row.channel,
            "status": "sent",
            "attempts": row.attempts + 1,
            "next_attempt_at": None,
            "error": None,
            "address": _shown_address(row.channel, address),
        }
    )
    return {"nid": row.id, "st": "sent", "at": row.attempts + 1, "err": None, "nxt": None, "sent": now}


# --- listing -------------------------------------------------------------------------------------


def list_notifications(
    session: Session, *, status: str | None = None, limit: int | None = 100
) -> tuple[list[dict], int]:
    """Notifications, newest first, in SPEC's JSON shape (plus priority, order and last error);
    returns (rows, how many match in all)."""
    stmt = sa.select(NOTE).order_by(NOTE.c.id.desc())
    if status:
        stmt = stmt.where(NOTE.c.status == status)
    rows, cut = fetch_page(session, stmt, limit or 0)
    total = count_matches(session, stmt)["total"] if cut else len(rows)
    return [
        {
            "id": r.id,
            "recipient": r.recipient,
            "channel": r.channel,
            "subject": r.subject,
            "body": r.body,
            "status": r.status,
            "attempts": r.attempts,
            "created_at": r.created_at,
            "sent_at": r.sent_at,
            "priority": r.priority,
            "order_id": r.order_id,
            "next_attempt_at": r.next_attempt_at,
            "last_error": r.last_error,
        }
        for r in rows
    ], total


def counts(session: Session) -> dict[str, int]:
    rows = session.execute(sa.select(NOTE.c.status, sa.func.count()).group_by(NOTE.c.status)).all()
    found: dict[str, int] = {status: n for status, n in rows}
    return {s: int(found.get(s, 0)) for s in STATUSES}
