"""The notification outbox: rows written in the transaction of the event that causes them.

Recipients are names from the config: a role (expands to its members), a user, or an order
field naming a person (``order.sales_rep``). Each person gets one row per channel they can be
reached on (email, webhook, wecom, dingtalk, feishu, slack), or one ``log`` row when they have
none. A role with a group chat (``[roles.NAME] dingtalk = ...``) is a recipient too, under its
own name: the team's chat gets one message besides its members' own. ``dedupe_key`` makes a
notification exactly-once: the same key for the same person and channel is never queued twice.
Delivery (``ffctl notify send``) is core/notify.py.

Digests (SPEC 9.1, one sweep, one message per person): a sweep runs in batches, one
transaction each, so it cannot know a person's whole list until its last batch. Each batch
therefore queues its items for a person and channel as one *part*: an outbox row that is
pending but never due (``next_attempt_at`` NULL, ``dedupe_key`` ``part:...``), whose body holds
the items as JSON, committed with the steps that caused them. When the sweep ends,
``merge_parts`` turns every part there is into one message per person and channel, in one
transaction: the first part becomes the message, the others are deleted. A sweep killed
halfway leaves its parts, and the rerun merges them with its own: no item is lost and none
is sent twice. The sender never sees a part (it only claims rows that are due).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from ffctl.core.models import Notification, Order
from ffctl.core.store import dialect_insert, insert_or_ignore, is_postgresql
from ffctl.core.text import command
from ffctl.i18n import _, ngettext

if TYPE_CHECKING:
    from ffctl.core.config import Config

NOTE = Notification.__table__
PART = "part:"  # dedupe_key prefix of a digest part
MERGED = "sweep:"  # ... and of the message it was merged into
#: what a digest lists first: past the deadline, then about to be, then the rules' alerts
RANKS = ("breached", "at_risk", "alert")


def resolve_people(
    session: Session, cfg: Config, recipients: Iterable[str], *, order_id: str | None = None
) -> list[str]:
    """Names (roles, users, order.sales_rep) to distinct user names, in order."""
    people: list[str] = []
    for name in recipients:
        if name.startswith("order."):
            if order_id is None:
                continue
            field = name.split(".", 1)[1]
            column = getattr(Order, field, None)
            if column is None:
                continue
            value = session.execute(sa.select(column).where(col(Order.order_id) == order_id)).scalar()
            found: tuple[str, ...] = (value,) if value else ()
        elif name in cfg.roles:
            role = cfg.roles[name]
            found = ((name,) if role.channels else ()) + role.members  # the team's chat, then its people
        else:
            found = (name,)
        for person in found:
            if person not in people:
                people.append(person)
    return people


def channels_for(cfg: Config, person: str) -> list[str]:
    """The channels a recipient is reached on: a role's group chats, or a user's email and chats
    (``log`` for a person with none)."""
    role = cfg.roles.get(person)
    if role is not None and role.channels:
        return list(role.channels)
    user = cfg.users.get(person)
    chans = []
    if user is not None and user.email:
        chans.append("email")
    if user is not None:
        chans.extend(user.channels)
    return chans or ["log"]


def queue(session: Session, cfg: Config, recipients: Iterable[str], **message: Any) -> int:
    """Queue one notification per person and channel (``message``: the keywords of
    ``notification_rows``); returns how many rows were written."""
    rows = notification_rows(session, cfg, recipients, **message)
    if message.get("dedupe_key"):
        return insert_or_ignore(session, Notification, rows, ["dedupe_key"])
    if rows:
        session.execute(sa.insert(Notification), rows)
    return len(rows)


def notification_rows(
    session: Session,
    cfg: Config,
    recipients: Iterable[str],
    *,
    subject: str,
    body: str,
    at: datetime,
    priority: str = "normal",
    order_id: str | None = None,
    dedupe_key: str | None = None,
) -> list[dict]:
    """The outbox rows ``queue`` writes (one per person and channel), without writing them."""
    rows = []
    for person in resolve_people(session, cfg, recipients, order_id=order_id):
        for channel in channels_for(cfg, person):
            rows.append(
                {
                    "recipient": person,
                    "channel": channel,
                    "subject": subject,
                    "body": body,
                    "priority": priority,
                    "order_id": order_id,
                    "dedupe_key": f"{dedupe_key}|{person}|{channel}" if dedupe_key else None,
                    "status": "pending",
                    "attempts": 0,
                    "created_at": at,
                    "next_attempt_at": at,
                }
            )
    return rows


def insert_rows(session: Session, rows: list[dict]) -> int:
    """Write many outbox rows in a few statements, skipping dedupe keys already queued.

    For set-based callers (the sweep); returns how many rows were written.
    """
    if not rows:
        return 0
    insert = dialect_insert(session)
    table = Notification.__table__
    # executemany + RETURNING: SQLAlchemy batches it into multi-row INSERTs ("insertmanyvalues")
    stmt = insert(table).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(table.c.id)
    return len(session.execute(stmt, rows).all())


# --- digests ---------------------------------------------------------------------------------------


def digest_item(
    *,
    key: str,
    head: str | None,
    short: str,
    body: str,
    rank: str,
    priority: str = "normal",
    order_id: str | None = None,
) -> dict:
    """One thing a person is told about. ``key`` groups items into one line (an order id);
    ``head`` starts that line ("SO-1 review"); ``short`` says what happened in a few words;
    ``body`` is the whole sentence, used when the message is about this one thing."""
    if rank not in RANKS:
        raise ValueError(f"unknown digest rank {rank!r}")
    return {
        "key": key,
        "head": head,
        "short": short,
        "body": body,
        "rank": rank,
        "priority": priority,
        "order": order_id,
    }


class Parts:
    """The digest items one transaction queues, written as one part per person and channel."""

    def __init__(self, session: Session, cfg: Config) -> None:
        self.session, self.cfg = session, cfg
        self.items: dict[str, list[dict]] = {}
        self.first: dict[str, str] = {}  # person -> the exactly-once key of their first item here
        self._people: dict[tuple, list[str]] = {}

    def add(self, recipients: Iterable[str], item: dict, *, key: str) -> None:
        """Queue ``item`` for each person ``recipients`` name (roles, users); ``key`` is unique to
        the cause (``task:<id>:<step>``), so each part gets a unique dedupe key."""
        names = tuple(recipients)
        people = self._people.get(names)
        if people is None:
            people = self._people[names] = resolve_people(self.session, self.cfg, names)
        for person in people:
            found = self.items.get(person)
            if found is None:
                found = self.items[person] = []
                self.first[person] = key
            found.append(item)

    def write(self, at: datetime) -> int:
        """Insert the parts (rows never due until ``merge_parts``); returns how many."""
        rows = []
        for person, items in self.items.items():
            if len({i["key"] for i in items}) > 1:  # whatever it merges with, a digest: its lines need no sentences
                items = [{**i, "body": ""} for i in items]
            payload = json.dumps(items, ensure_ascii=False, separators=(",", ":"))
            for channel in channels_for(self.cfg, person):
                rows.append(
                    {
                        "recipient": person,
                        "channel": channel,
                        "subject": _part_subject(len(items)),
                        "body": payload,
                        "priority": _priority(items),
                        "order_id": None,
                        "status": "pending",
                        "attempts": 0,
                        "dedupe_key": f"{PART}{self.first[person]}|{person}|{channel}",
                        "created_at": at,
                        "next_attempt_at": None,
                    }
                )
        self.items, self.first = {}, {}
        return insert_rows(self.session, rows)


def _part_subject(count: int) -> str:
    return ngettext(
        "[ffctl] part of a digest: {count} item, sent when the sweep ends",
        "[ffctl] part of a digest: {count} items, sent when the sweep ends",
        count,
    ).format(count=count)


def _priority(items: list[dict]) -> str:
    return "high" if any(i["priority"] == "high" for i in items) else "normal"


def merge_parts(session: Session, cfg: Config, *, now: datetime) -> int:
    """Merge every digest part into one message per person and channel, due at ``now``; returns
    how many messages that made. Parts are merged in the order they were queued."""
    stmt = (
        sa.select(NOTE.c.id, NOTE.c.recipient, NOTE.c.channel, NOTE.c.body, NOTE.c.dedupe_key)
        .where(NOTE.c.status == "pending", NOTE.c.next_attempt_at.is_(None), NOTE.c.dedupe_key.like(f"{PART}%"))
        .order_by(NOTE.c.id)
    )
    if is_postgresql(session):
        # waits for a concurrent merge, then skips the parts it merged (their row no longer matches)
        stmt = stmt.with_for_update()
    groups: dict[tuple[str, str], list] = {}
    for row in session.execute(stmt):
        groups.setdefault((row.recipient, row.channel), []).append(row)
    if not groups:
        return 0
    messages: list = []
    spent: list = []
    rendered: dict[tuple, tuple] = {}  # a person's channels have the same parts: read and worded once
    for parts in groups.values():
        first = parts[0]
        bodies = tuple(p.body for p in parts)
        if bodies not in rendered:
            rendered[bodies] = render([item for text in bodies for item in json.loads(text)])
        subject, body, priority, order_id = rendered[bodies]
        messages.append(
            {
                "nid": first.id,
                "subject": subject,
                "body": body,
                "priority": priority,
                "oid": order_id,
                "key": MERGED + first.dedupe_key[len(PART) :],
                "due": now,
            }
        )
        spent.extend(p.id for p in parts[1:])
    update_notes(
        session,
        messages,
        subject="subject",
        body="body",
        priority="priority",
        order_id="oid",
        dedupe_key="key",
        next_attempt_at="due",
    )
    for start in range(0, len(spent), 500):
        session.execute(sa.delete(NOTE).where(NOTE.c.id.in_(spent[start : start + 500])))
    return len(messages)


def update_notes(session: Session, rows: list[dict], **columns: str) -> None:
    """Update notification rows by id, one statement for all: each of ``rows`` names its row by
    ``nid`` and its new values by the keys ``columns`` maps each column to."""
    values: dict[str, Any] = {column: sa.bindparam(key) for column, key in columns.items()}
    session.execute(sa.update(NOTE).where(NOTE.c.id == sa.bindparam("nid")).values(**values), rows)


def render(items: list[dict]) -> tuple[str, str, str, str | None]:
    """(subject, body, priority, order_id) of one message to one person about ``items``.

    One item: its own subject and sentence. Several about one order: one subject naming them
    all. Several orders: a digest, past-deadline orders first, one line per order.
    """
    lines: dict[str, list[dict]] = {}
    for item in items:
        lines.setdefault(item["key"], []).append(item)
    priority = _priority(items)
    if len(lines) == 1:
        (group,) = lines.values()
        order_id = group[0]["order"]
        if len(group) == 1 and group[0]["head"] is None:
            subject = group[0]["short"]
        else:
            subject = f"[ffctl] {_line(group)}"
        body = "\n".join(i["body"] for i in group)
        if order_id:
            body += "\n\n" + _("Order {order}: `{command}`.").format(
                order=order_id, command=command("order", "show", order_id)
            )
        return subject, body, priority, order_id
    ranked: dict[str, list[list[dict]]] = {rank: [] for rank in RANKS}  # each list in queue order
    for group in lines.values():
        ranked[RANKS[min(RANKS.index(i["rank"]) for i in group)]].append(group)
    groups = [g for found in ranked.values() for g in found]
    counts = ", ".join(_COUNTED[rank](len(found)) for rank, found in ranked.items() if found)
    n = len(groups)
    if all(g[0]["order"] for g in groups):
        subject = ngettext("[ffctl] {count} order needs you: {counts}", "[ffctl] {count} orders need you: {counts}", n)
        intro = ngettext(
            "{count} order needs your attention ({counts}):", "{count} orders need your attention ({counts}):", n
        )
    else:  # a rule's alert about a SKU or a supplier is not an order
        subject = ngettext("[ffctl] {count} item needs you: {counts}", "[ffctl] {count} items need you: {counts}", n)
        intro = ngettext(
            "{count} item needs your attention ({counts}):", "{count} items need your attention ({counts}):", n
        )
    out = [intro.format(count=n, counts=counts)]
    subject = subject.format(count=n, counts=counts)
    for rank, found in ranked.items():
        if found:
            out.append("")
            out.append(_HEADINGS[rank]())
            out.extend(f"- {_line(g)}" for g in found)
    out.append("")
    out.append(_("Open one with `ffctl order show ORDER_ID`; your open tasks: `ffctl task list --mine`."))
    return subject, "\n".join(out), priority, None


def _line(group: list[dict]) -> str:
    """One order's line: "SO-1 review: reminder, 1h late; escalated, 1h late"."""
    head = next((i["head"] for i in group if i["head"]), None)
    said = "; ".join(dict.fromkeys(i["short"] for i in group))  # two escalations to the top say it once
    return f"{head}: {said}" if head else said


_COUNTED = {
    "breached": lambda n: _("{count} breached").format(count=n),
    "at_risk": lambda n: _("{count} at risk").format(count=n),
    "alert": lambda n: ngettext("{count} alert", "{count} alerts", n).format(count=n),
}
_HEADINGS = {
    "breached": lambda: _("Past the deadline:"),
    "at_risk": lambda: _("At risk:"),
    "alert": lambda: _("Alerts:"),
}
