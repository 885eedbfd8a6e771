"""``config diff``: what changed between two validated configs, in the config's own terms.

Each difference is one plain dict ``{section, name, field, old, new, text}``, where ``text`` reads
like "node review: SLA 30m → 45m", "calendar office: holiday 2026-10-08 added" or "role lead:
members +carol". Pure: compares two ``Config`` objects, no store. Secrets never show: URLs are
masked and webhook or e-mail credentials are only said to have changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from ffctl.core.config import WEEKDAYS, Config, describe_spec
from ffctl.core.durations import format_duration
from ffctl.core.secrets import mask_url
from ffctl.i18n import _


def diff(old: Config, new: Config) -> list[dict]:
    """Every difference from ``old`` to ``new``, section by section in the file's order."""
    out: list[dict] = []

    def add(section: str, name: str | None, field: str | None, was: Any, now: Any, text: str) -> None:
        out.append({"section": section, "name": name, "field": field, "old": was, "new": now, "text": text})

    if _here(old, old.database_url) != _here(new, new.database_url):
        was, now = (mask_url(u) if u else None for u in (old.database_url, new.database_url))
        add("database", None, "url", was, now, _("database: url {old} → {new}").format(old=was, new=now))
    if old.timezone != new.timezone:
        add(
            "defaults",
            None,
            "timezone",
            old.timezone,
            new.timezone,
            _("defaults: timezone {old} → {new}").format(old=old.timezone, new=new.timezone),
        )
    _named(add, "calendar", old.calendars, new.calendars, _calendar)
    _named(add, "role", old.roles, new.roles, _role)
    _named(add, "user", old.users, new.users, _user)
    _workflows(add, old, new)
    _named(add, "node", old.nodes, new.nodes, _node)
    _named(add, "rule", {r.name: r for r in old.rules}, {r.name: r for r in new.rules}, _rule)
    if replace(old.notify, log=_here(old, old.notify.log)) != replace(new.notify, log=_here(new, new.notify.log)):
        add("notify", None, None, None, None, _("notify: settings changed"))
    for job in sorted(set(old.schedule) | set(new.schedule)):
        was, now = old.schedule.get(job), new.schedule.get(job)
        if was != now:
            add(
                "schedule",
                job,
                None,
                was,
                now,
                _("schedule {job}: {old} → {new}").format(job=job, old=was or _("(none)"), new=now or _("(none)")),
            )
    for section, attr in (("kpi.targets", "kpi_targets"), ("kpi.baseline", "kpi_baseline")):
        was_all, now_all = getattr(old, attr, {}) or {}, getattr(new, attr, {}) or {}
        for key in sorted(set(was_all) | set(now_all)):
            was, now = was_all.get(key), now_all.get(key)
            if was != now:
                add(
                    section,
                    key,
                    None,
                    was,
                    now,
                    _("{section} {key}: {old} → {new}").format(
                        section=section, key=key, old=_none(was), new=_none(now)
                    ),
                )
    return out


def _here(cfg: Config, value: str | None) -> str | None:
    """A path (or SQLite URL) the config resolved against its folder, relative to that folder again:
    the same text in two folders is the same setting."""
    if not value:
        return value
    prefix = "sqlite:///" if value.startswith("sqlite:///") else ""
    if value.startswith("sqlite:") and not prefix:
        return value
    path = value[len(prefix) :]
    return prefix + os.path.relpath(path, cfg.directory) if os.path.isabs(path) else value


def _none(value: Any) -> str:
    return _("(none)") if value is None else str(value)


def _named(
    add: Callable,
    section: str,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    fields: Callable[[Any, Any], Iterable[tuple[str, Any, Any, str]]],
) -> None:
    """Added and removed names, then each changed field of a name both configs define."""
    for name in list(old) + [n for n in new if n not in old]:
        if name not in new:
            add(section, name, None, name, None, _("{section} {name}: removed").format(section=section, name=name))
        elif name not in old:
            add(section, name, None, None, name, _("{section} {name}: added").format(section=section, name=name))
        elif old[name] != new[name]:
            for field, was, now, words in fields(old[name], new[name]):
                add(
                    section,
                    name,
                    field,
                    was,
                    now,
                    _("{section} {name}: {words}").format(section=section, name=name, words=words),
                )


def _change(field: str, label: str, was: Any, now: Any, show: Callable[[Any], str] = _none):
    if was != now:
        yield field, was, now, _("{label} {old} → {new}").format(label=label, old=show(was), new=show(now))


def _hours(ranges: Iterable[tuple[int, int]]) -> str:
    shown = ", ".join(f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}" for a, b in ranges)
    return shown or _("closed")


def _calendar(old, new):
    yield from _change("timezone", _("timezone"), old.timezone, new.timezone)
    for day in range(7):
        was, now = tuple(old.hours.get(day, ())), tuple(new.hours.get(day, ()))
        if was != now:
            yield (
                f"hours.{WEEKDAYS[day]}",
                _hours(was),
                _hours(now),
                _("hours {day} {old} → {new}").format(day=WEEKDAYS[day], old=_hours(was), new=_hours(now)),
            )
    for day in sorted(new.holidays - old.holidays):
        yield "holidays", None, day.isoformat(), _("holiday {date} added").format(date=day.isoformat())
    for day in sorted(old.holidays - new.holidays):
        yield "holidays", day.isoformat(), None, _("holiday {date} removed").format(date=day.isoformat())


def _role(old, new):
    added = [m for m in new.members if m not in old.members]
    removed = [m for m in old.members if m not in new.members]
    if added or removed:
        words = " ".join([f"+{m}" for m in added] + [f"-{m}" for m in removed])
        yield "members", list(old.members), list(new.members), _("members {change}").format(change=words)
    yield from _change("escalate_to", _("escalates to"), old.escalate_to, new.escalate_to)


def _user(old, new):
    if old.email != new.email:
        yield "email", old.email, new.email, _("email {old} → {new}").format(old=_none(old.email), new=_none(new.email))
    if old.webhook != new.webhook:  # a webhook URL may carry a token: say that it changed, not what to
        yield "webhook", None, None, _("webhook changed")
    if (old.email, old.webhook) == (new.email, new.webhook):
        yield "channels", None, None, _("channels changed")


def _step(step) -> str:
    after = format_duration(step.after_seconds) if step.after_seconds else "0m"
    words = f"+{after} {step.action}"
    if step.to:
        words += _(" to {recipients}").format(recipients=", ".join(step.to))
    return words


def _node(old, new):
    yield from _change("sla", "SLA", old.sla_seconds, new.sla_seconds, format_duration)
    yield from _change("calendar", _("calendar"), old.calendar, new.calendar, lambda c: c or _("(none: wall clock)"))
    yield from _change("warn_at", "warn_at", old.warn_at, new.warn_at, lambda w: f"{w:g}")
    yield from _change("owner", _("owner"), old.owner, new.owner)
    yield from _change("critical", "critical", old.critical, new.critical, lambda c: str(c).lower())
    yield from _change("auto", "auto", old.auto, new.auto)
    yield from _spec_change("when", _("when {old} → {new}"), old.when, new.when, _("(always)"))
    if old.escalation != new.escalation:
        was, now = [_step(s) for s in old.escalation], [_step(s) for s in new.escalation]
        yield (
            "escalation",
            was,
            now,
            _("escalation [{old}] → [{new}]").format(old="; ".join(was) or _("none"), new="; ".join(now) or _("none")),
        )


def _spec_change(key: str, line: str, old, new, unset: str):
    """A changed routing spec (a node's ``when``, a workflow's ``match``), ``unset`` naming an empty one."""
    if old != new:
        yield (
            key,
            None,
            None,
            line.format(old=describe_spec(old) if old else unset, new=describe_spec(new) if new else unset),
        )


def _rule(old, new):
    yield from _change("kind", _("kind"), old.kind, new.kind)
    yield from _change("priority", _("priority"), old.priority, new.priority)
    if replace(old.notify, log=_here(old, old.notify.log)) != replace(new.notify, log=_here(new, new.notify.log)):
        yield (
            "notify",
            list(old.notify),
            list(new.notify),
            _("notify {old} → {new}").format(
                old=", ".join(old.notify) or _("nobody"), new=", ".join(new.notify) or _("nobody")
            ),
        )
    for key in sorted(set(old.params) | set(new.params)):
        yield from _change(key, key, old.params.get(key), new.params.get(key))


def _workflows(add: Callable, old: Config, new: Config) -> None:
    was = {wf.name: wf for wf in old.workflows}
    now = {wf.name: wf for wf in new.workflows}

    def fields(a, b):
        yield from _spec_change("match", _("match {old} → {new}"), a.match, b.match, _("(every order)"))
        if a.nodes != b.nodes:
            yield (
                "nodes",
                list(a.nodes),
                list(b.nodes),
                _("nodes {old} → {new}").format(old=" > ".join(a.nodes), new=" > ".join(b.nodes)),
            )

    _named(add, "workflow", was, now, fields)
    common_old = [n for n in was if n in now]
    common_new = [n for n in now if n in was]
    if common_old != common_new:  # the first workflow that matches wins: order is routing
        add(
            "workflow",
            None,
            "order",
            common_old,
            common_new,
            _("workflow order {old} → {new}").format(old=", ".join(common_old), new=", ".join(common_new)),
        )
