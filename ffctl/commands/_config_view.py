"""The readable summary `ffctl config check` prints: the config in business terms.

Reads a validated :class:`~ffctl.core.config.Config`; the rules it spells out (escalation chains,
match specs, calendars) stay with the config in ``ffctl.core.config``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ffctl.core.config import (
    KPI_TARGETS,
    SCHEDULE_JOBS,
    WEEKDAYS,
    CalendarConfig,
    ChannelTarget,
    Config,
    NodeConfig,
    NotifyConfig,
    RuleConfig,
    WorkflowConfig,
    describe_spec,
    hhmm,
)
from ffctl.core.durations import format_duration
from ffctl.core.secrets import mask_url
from ffctl.i18n import _, ngettext


def describe_workflows(config: Config) -> str:
    """A plain-text picture of the config for business users: workflows as node lists with their
    SLA, owner and escalation ladder, then one line per role, calendar, rule and schedule job."""
    out: list[str] = [f"config {config.file}"]
    if config.database_url:
        out.append(f"  database  {mask_url(config.database_url)}")
    else:
        out.append("  database  not set: sqlite ffctl.db next to this file (unless --db or FFCTL_DB)")
    out.append(f"  timezone  {config.timezone}")
    out.append("")
    out.append("Workflows are tried in this order; an order takes the first one that matches.")
    out.append("Ladder times count from the node's deadline, on the node's clock.")
    for workflow in config.workflows:
        out.append("")
        out.extend(_describe_workflow(config, workflow))
    if not config.workflows:
        out.append("")
        out.append("no workflows: imported orders have nowhere to go")
    unused = [n for n in config.nodes if not any(n in wf.nodes for wf in config.workflows)]
    if unused:
        out.append("")
        out.append(f"nodes in no workflow: {', '.join(unused)}")

    out.extend(_section("roles", _describe_roles(config)))
    out.extend(_section("users (how people are reached)", _describe_users(config)))
    out.extend(_section("calendars", [(c.name, _describe_calendar(c)) for c in config.calendars.values()]))
    out.extend(_section("rules", [(r.name, _describe_rule(config, r)) for r in config.rules]))
    out.extend(_section("notifications", [("", _describe_notify(config.notify))]))
    out.extend(_section("schedule (run by `ffctl schedule tick` from cron every minute)", _describe_schedule(config.schedule)))
    out.extend(_section("kpi targets", _describe_targets(config.kpi_targets)))
    if config.kpi_baseline:
        out.extend(_section("kpi baseline (where each KPI stood before; reports show baseline → actual → target)",
                            _describe_baseline(config.kpi_baseline)))
    return "\n".join(out) + "\n"


def _section(title: str, rows: list[tuple[str, str]]) -> list[str]:
    if not rows:
        return ["", f"{title}: none"]
    width = max(len(name) for name, _ in rows)
    lines = ["", title]
    for name, text in rows:
        lines.append(f"  {name:<{width}}  {text}".rstrip() if name else f"  {text}")
    return lines


def _describe_workflow(config: Config, workflow: WorkflowConfig) -> list[str]:
    fits = f"matches {describe_spec(workflow.match)}" if workflow.match else "matches every order"
    lines = [f"workflow {workflow.name}  ({fits})"]
    width = max((len(n) for n in workflow.nodes), default=0)
    for position, name in enumerate(workflow.nodes, start=1):
        node = config.nodes[name]
        if node.auto:
            who = f"auto: {node.auto}" + (f", owner {node.owner}" if node.owner else "")
        else:
            who = f"manual, owner {node.owner}"
        clock = f"{node.calendar} hours" if node.calendar else "wall clock"
        text = f"  {position}. {name:<{width}}  {who}   SLA {format_duration(node.sla_seconds)} ({clock}), at risk at {node.warn_at:.0%}"
        if node.critical:
            text += "   critical"
        if node.when:
            text += f"   only when {describe_spec(node.when)}"
        lines.append(text)
        previous = workflow.nodes[position - 2] if position > 1 else None
        lines.append(f"     ladder: {_describe_ladder(config, node, previous)}")
    return lines


def _describe_ladder(config: Config, node: NodeConfig, previous: str | None) -> str:
    if not node.escalation:
        return "none (a breach is recorded, nobody is chased)"
    chain = config.escalation_chain(node.owner)
    escalations = 0
    steps = []
    for step in node.escalation:
        text = f"+{format_duration(step.after_seconds) if step.after_seconds else '0m'} "
        if step.action == "remind":
            text += f"remind {node.owner}"
        elif step.action == "escalate":
            escalations += 1
            if escalations <= len(chain):
                text += f"escalate → {chain[escalations - 1]}"
            else:
                top = chain[-1] if chain else node.owner
                text += f"escalate → (no role above {top}: nobody new is added)"
        elif step.action == "notify":
            text += f"notify {', '.join(step.to)}"
        elif step.action == "auto_approve":
            text += "auto-approve (the node completes by itself)"
        elif step.action == "auto_reject":
            text += f"auto-reject → back to {previous}" if previous else "auto-reject → order on hold"
        if step.reason:
            text += f' ("{step.reason}")'
        steps.append(text)
    return " · ".join(steps)


def _describe_roles(config: Config) -> list[tuple[str, str]]:
    rows = []
    for role in config.roles.values():
        members = ", ".join(role.members) if role.members else "(no members)"
        chain = config.escalation_chain(role.name)
        chat = _(" · group chat {channels}").format(channels=_describe_channels(role.channels)) if role.channels else ""
        rows.append((role.name, members + (f"   escalates to {' → '.join(chain)}" if chain else "") + chat))
    return rows


def _describe_users(config: Config) -> list[tuple[str, str]]:
    rows = []
    for user in config.users.values():
        channels = [f"email {user.email}"] if user.email else []
        if user.channels:
            channels.append(_describe_channels(user.channels))
        rows.append((user.name, ", ".join(channels) or "(no channels: notifications only go to the log)"))
    return rows


def _describe_channels(channels: Mapping[str, ChannelTarget]) -> str:
    return ", ".join(f"{name} {target.shown()}" for name, target in channels.items())


def _describe_calendar(calendar: CalendarConfig) -> str:
    groups: list[tuple[list[int], tuple[tuple[int, int], ...]]] = []
    for day in range(7):
        ranges = calendar.hours.get(day, ())
        if groups and groups[-1][1] == ranges and groups[-1][0][-1] == day - 1:
            groups[-1][0].append(day)
        else:
            groups.append(([day], ranges))
    parts = []
    closed = []
    for days, ranges in groups:
        names = WEEKDAYS[days[0]].title() + (f"-{WEEKDAYS[days[-1]].title()}" if len(days) > 1 else "")
        if ranges:
            parts.append(f"{names} {', '.join(f'{hhmm(a)}-{hhmm(b)}' for a, b in ranges)}")
        else:
            closed.append(names)
    text = f"{calendar.timezone}   " + " · ".join(parts)
    if closed:
        text += f" · closed {', '.join(closed)}"
    if calendar.holidays:
        days = sorted(calendar.holidays)
        shown = ", ".join(d.isoformat() for d in days[:4]) + (f" and {len(days) - 4} more" if len(days) > 4 else "")
        text += f" · holidays {shown}"
    return text


def _describe_rule(config: Config, rule: RuleConfig) -> str:
    p = rule.params
    if rule.kind == "stock_below":
        level = "available + inbound stock" if p.get("include_inbound") else "available stock"
        text = f"stock_below: {level} under the product's safety stock → draft a purchase requisition (one open per SKU)"
    elif rule.kind == "dwell":
        node = config.nodes.get(str(p["node"]))
        if p["clock"] == "calendar":
            clock = f"{node.calendar} hours" if node and node.calendar else "calendar clock, but the node has none: wall clock"
        else:
            clock = "wall clock"
        text = f"dwell: orders at {p['node']} longer than {format_duration(int(p['longer_than_seconds']))} ({clock}) → flag {p['flag']}"
    elif rule.kind == "supplier":
        reasons = []
        if p.get("qc_pass_rate_below") is not None:
            n = int(p["consecutive_batches"])
            reasons.append(f"QC pass rate below {float(p['qc_pass_rate_below']) * 100:g}% "
                           + ngettext("in the last batch", "for {n} batches in a row", n).format(n=n))
        if p.get("avg_delay_days_above") is not None:
            n = int(p["window_batches"])
            reasons.append(f"average delay above {float(p['avg_delay_days_above']):g} days "
                           + ngettext("over the last batch", "over the last {n} batches", n).format(n=n))
        text = f"supplier: {' or '.join(reasons)} → freeze inspection exemption"
    else:
        text = rule.kind
    if rule.notify:
        text += f" · notify {', '.join(rule.notify)}"
    return text + f" · {rule.priority} priority"


def _describe_notify(notify: NotifyConfig) -> str:
    parts = [f"log {notify.log}" if notify.log else "no log file"]
    if notify.email:
        e = notify.email
        auth = f", login {e.username or e.sender} with the password from ${e.password_env}" if e.password_env else ""
        security = " (TLS)" if e.tls else " (STARTTLS)" if e.starttls else _(" (no TLS)")
        if e.ca_file:
            security = security[:-1] + _(", trusting {file})").format(file=e.ca_file)
        parts.append(f"email via {e.host}:{e.port}{security} from {e.sender}{auth}")
    else:
        parts.append("no email server: email recipients are not mailed")
    parts.append(f"up to {notify.max_attempts} attempts")
    parts.append(f"webhook timeout {notify.webhook_timeout_seconds:g}s")
    return " · ".join(parts)


_JOB_PURPOSE = {
    "sla_sweep": "flag at-risk and breached tasks, escalate, run the rules",
    "notify_send": "deliver queued notifications",
    "rules_run": "run the rule engine alone",
    "daily_report": "the KPI report",
}


def _describe_schedule(schedule: Mapping[str, str]) -> list[tuple[str, str]]:
    rows = []
    width = max((len(e) for e in schedule.values()), default=0)
    for job in SCHEDULE_JOBS:
        expression = schedule.get(job)
        if expression is None:
            rows.append((job, f"{'-':<{width}}   not scheduled ({_JOB_PURPOSE[job]})"))
        else:
            rows.append((job, f"{expression:<{width}}   {_describe_cron(expression)} ({_JOB_PURPOSE[job]})"))
    return rows


def _describe_cron(expression: str) -> str:
    """Common cron shapes in words; anything else is left to the expression itself."""
    fields = expression.split()
    if len(fields) != 5:
        return expression
    minute, hour, dom, month, dow = fields
    if (dom, month, dow) != ("*", "*", "*"):
        return "custom"
    if hour == "*":
        if minute == "*":
            return "every minute"
        if re.fullmatch(r"\*/\d+", minute):
            return f"every {minute[2:]} minutes"
        if minute.isdigit():
            return f"hourly at :{int(minute):02d}"
    elif hour.isdigit() and minute.isdigit():
        return f"daily at {int(hour):02d}:{int(minute):02d}"
    return "custom"


def _describe_targets(targets: Mapping[str, float]) -> list[tuple[str, str]]:
    rows = []
    for name, value in targets.items():
        measure = KPI_TARGETS[name]
        if measure == "rate":
            rows.append((name, f"≥ {value * 100:g}%"))
        else:
            rows.append((name, f"≤ {value:g} {measure}"))
    return rows


def _describe_baseline(baseline: Mapping[str, float]) -> list[tuple[str, str]]:
    rows = []
    for name, value in baseline.items():
        measure = KPI_TARGETS[name]
        rows.append((name, f"{value * 100:g}%" if measure == "rate" else f"{value:g} {measure}"))
    return rows
