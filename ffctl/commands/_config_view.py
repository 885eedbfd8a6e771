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
from ffctl.i18n import N_, _, ngettext


def describe_workflows(config: Config) -> str:
    """A plain-text picture of the config for business users: workflows as node lists with their
    SLA, owner and escalation ladder, then one line per role, calendar, rule and schedule job."""
    out: list[str] = [_("config {file}").format(file=config.file)]
    if config.database_url:
        out.append(_("  database  {mask_url}").format(mask_url=mask_url(config.database_url)))
    else:
        out.append(_("  database  not set: sqlite ffctl.db next to this file (unless --db or FFCTL_DB)"))
    out.append(_("  timezone  {timezone}").format(timezone=config.timezone))
    out.append("")
    out.append(_("Workflows are tried in this order; an order takes the first one that matches."))
    out.append(_("Ladder times count from the node's deadline, on the node's clock."))
    for workflow in config.workflows:
        out.append("")
        out.extend(_describe_workflow(config, workflow))
    if not config.workflows:
        out.append("")
        out.append(_("no workflows: imported orders have nowhere to go"))
    unused = [n for n in config.nodes if not any(n in wf.nodes for wf in config.workflows)]
    if unused:
        out.append("")
        out.append(_("nodes in no workflow: {names}").format(names=", ".join(unused)))

    out.extend(_section(_("roles"), _describe_roles(config)))
    out.extend(_section(_("users (how people are reached)"), _describe_users(config)))
    out.extend(_section(_("calendars"), [(c.name, _describe_calendar(c)) for c in config.calendars.values()]))
    out.extend(_section(_("rules"), [(r.name, _describe_rule(config, r)) for r in config.rules]))
    out.extend(_section(_("notifications"), [("", _describe_notify(config.notify))]))
    out.extend(
        _section(
            _("schedule (run by `ffctl schedule tick` from cron every minute)"), _describe_schedule(config.schedule)
        )
    )
    out.extend(_section(_("kpi targets"), _describe_targets(config.kpi_targets)))
    if config.kpi_baseline:
        out.extend(
            _section(
                _("kpi baseline (where each KPI stood before; reports show baseline → actual → target)"),
                _describe_baseline(config.kpi_baseline),
            )
        )
    return "\n".join(out) + "\n"


def _section(title: str, rows: list[tuple[str, str]]) -> list[str]:
    if not rows:
        return ["", _("{title}: none").format(title=title)]
    width = max(len(name) for name, _ in rows)
    lines = ["", title]
    for name, text in rows:
        lines.append(f"  {name:<{width}}  {text}".rstrip() if name else f"  {text}")
    return lines


def _describe_workflow(config: Config, workflow: WorkflowConfig) -> list[str]:
    fits = (
        _("matches {describe_spec}").format(describe_spec=describe_spec(workflow.match))
        if workflow.match
        else _("matches every order")
    )
    lines = [_("workflow {name}  ({fits})").format(name=workflow.name, fits=fits)]
    width = max((len(n) for n in workflow.nodes), default=0)
    for position, name in enumerate(workflow.nodes, start=1):
        node = config.nodes[name]
        if node.auto:
            who = _("auto: {auto}").format(auto=node.auto) + (
                _(", owner {owner}").format(owner=node.owner) if node.owner else ""
            )
        else:
            who = _("manual, owner {owner}").format(owner=node.owner)
        clock = _("{calendar} hours").format(calendar=node.calendar) if node.calendar else _("wall clock")
        text = f"  {position}. {name:<{width}}  " + _("{who}   SLA {sla} ({clock}), at risk at {warn_at:.0%}").format(
            who=who, sla=format_duration(node.sla_seconds), clock=clock, warn_at=node.warn_at
        )
        if node.critical:
            text += _("   critical")
        if node.when:
            text += _("   only when {describe_spec}").format(describe_spec=describe_spec(node.when))
        lines.append(text)
        previous = workflow.nodes[position - 2] if position > 1 else None
        lines.append(
            _("     ladder: {describe_ladder}").format(describe_ladder=_describe_ladder(config, node, previous))
        )
    return lines


def _describe_ladder(config: Config, node: NodeConfig, previous: str | None) -> str:
    if not node.escalation:
        return _("none (a breach is recorded, nobody is chased)")
    chain = config.escalation_chain(node.owner)
    escalations = 0
    steps = []
    for step in node.escalation:
        text = f"+{format_duration(step.after_seconds) if step.after_seconds else '0m'} "
        if step.action == "remind":
            text += _("remind {owner}").format(owner=node.owner)
        elif step.action == "escalate":
            escalations += 1
            if escalations <= len(chain):
                text += _("escalate → {role}").format(role=chain[escalations - 1])
            else:
                top = chain[-1] if chain else node.owner
                text += _("escalate → (no role above {top}: nobody new is added)").format(top=top)
        elif step.action == "notify":
            text += _("notify {names}").format(names=", ".join(step.to))
        elif step.action == "auto_approve":
            text += _("auto-approve (the node completes by itself)")
        elif step.action == "auto_reject":
            text += (
                _("auto-reject → back to {previous}").format(previous=previous)
                if previous
                else _("auto-reject → order on hold")
            )
        if step.reason:
            text += f' ("{step.reason}")'
        steps.append(text)
    return " · ".join(steps)


def _describe_roles(config: Config) -> list[tuple[str, str]]:
    rows = []
    for role in config.roles.values():
        members = ", ".join(role.members) if role.members else _("(no members)")
        chain = config.escalation_chain(role.name)
        chat = _(" · group chat {channels}").format(channels=_describe_channels(role.channels)) if role.channels else ""
        rows.append(
            (
                role.name,
                members + (_("   escalates to {names}").format(names=" → ".join(chain)) if chain else "") + chat,
            )
        )
    return rows


def _describe_users(config: Config) -> list[tuple[str, str]]:
    rows = []
    for user in config.users.values():
        channels = [_("email {email}").format(email=user.email)] if user.email else []
        if user.channels:
            channels.append(_describe_channels(user.channels))
        rows.append((user.name, ", ".join(channels) or _("(no channels: notifications only go to the log)")))
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
        text += _(" · closed {names}").format(names=", ".join(closed))
    if calendar.holidays:
        days = sorted(calendar.holidays)
        shown = ", ".join(d.isoformat() for d in days[:4]) + (
            _(" and {n} more").format(n=len(days) - 4) if len(days) > 4 else ""
        )
        text += _(" · holidays {shown}").format(shown=shown)
    return text


def _describe_rule(config: Config, rule: RuleConfig) -> str:
    p = rule.params
    if rule.kind == "stock_below":
        level = _("available + inbound stock") if p.get("include_inbound") else _("available stock")
        text = _(
            "stock_below: {level} under the product's safety stock → draft a purchase requisition (one open per SKU)"
        ).format(level=level)
    elif rule.kind == "dwell":
        node = config.nodes.get(str(p["node"]))
        if p["clock"] == "calendar":
            clock = (
                _("{calendar} hours").format(calendar=node.calendar)
                if node and node.calendar
                else _("calendar clock, but the node has none: wall clock")
            )
        else:
            clock = _("wall clock")
        text = _("dwell: orders at {node} longer than {format_duration} ({clock}) → flag {flag}").format(
            node=p["node"], format_duration=format_duration(int(p["longer_than_seconds"])), clock=clock, flag=p["flag"]
        )
    elif rule.kind == "supplier":
        reasons = []
        if p.get("qc_pass_rate_below") is not None:
            n = int(p["consecutive_batches"])
            reasons.append(
                _("QC pass rate below {percent:g}% ").format(percent=float(p["qc_pass_rate_below"]) * 100)
                + (_("in the last batch") if n == 1 else _("for {n} batches in a row").format(n=n))
            )
        if p.get("avg_delay_days_above") is not None:
            n = int(p["window_batches"])
            reasons.append(
                _("average delay above {days:g} days ").format(days=float(p["avg_delay_days_above"]))
                + ngettext("over the last batch", "over the last {n} batches", n).format(n=n)
            )
        text = _("supplier: {reasons} → freeze inspection exemption").format(reasons=_(" or ").join(reasons))
    else:
        text = rule.kind
    if rule.notify:
        text += _(" · notify {names}").format(names=", ".join(rule.notify))
    return text + _(" · {priority} priority").format(priority=rule.priority)


def _describe_notify(notify: NotifyConfig) -> str:
    parts = [_("log {log}").format(log=notify.log) if notify.log else _("no log file")]
    if notify.email:
        e = notify.email
        auth = (
            _(", login {login} with the password from ${password_env}").format(
                login=e.username or e.sender, password_env=e.password_env
            )
            if e.password_env
            else ""
        )
        security = _(" (TLS)") if e.tls else _(" (STARTTLS)") if e.starttls else _(" (no TLS)")
        if e.ca_file:
            security = security[:-1] + _(", trusting {file})").format(file=e.ca_file)
        parts.append(
            _("email via {host}:{port}{security} from {sender}{auth}").format(
                host=e.host, port=e.port, security=security, sender=e.sender, auth=auth
            )
        )
    else:
        parts.append(_("no email server: email recipients are not mailed"))
    parts.append(_("up to {max_attempts} attempts").format(max_attempts=notify.max_attempts))
    parts.append(
        _("webhook timeout {webhook_timeout_seconds:g}s").format(webhook_timeout_seconds=notify.webhook_timeout_seconds)
    )
    return " · ".join(parts)


_JOB_PURPOSE = {
    "sla_sweep": N_("flag at-risk and breached tasks, escalate, run the rules"),
    "notify_send": N_("deliver queued notifications"),
    "rules_run": N_("run the rule engine alone"),
    "daily_report": N_("the KPI report"),
}


def _describe_schedule(schedule: Mapping[str, str]) -> list[tuple[str, str]]:
    rows = []
    width = max((len(e) for e in schedule.values()), default=0)
    for job in SCHEDULE_JOBS:
        expression = schedule.get(job)
        if expression is None:
            rows.append(
                (job, f"{'-':<{width}}   " + _("not scheduled ({purpose})").format(purpose=_(_JOB_PURPOSE[job])))
            )
        else:
            rows.append(
                (
                    job,
                    f"{expression:<{width}}   "
                    + _("{schedule} ({purpose})").format(
                        schedule=_describe_cron(expression), purpose=_(_JOB_PURPOSE[job])
                    ),
                )
            )
    return rows


def _describe_cron(expression: str) -> str:
    """Common cron shapes in words; anything else is left to the expression itself."""
    fields = expression.split()
    if len(fields) != 5:
        return expression
    minute, hour, dom, month, dow = fields
    if (dom, month, dow) != ("*", "*", "*"):
        return _("custom")
    if hour == "*":
        if minute == "*":
            return _("every minute")
        if re.fullmatch(r"\*/\d+", minute):
            return _("every {n} minutes").format(n=minute[2:])
        if minute.isdigit():
            return _("hourly at :{minute:02d}").format(minute=int(minute))
    elif hour.isdigit() and minute.isdigit():
        return _("daily at {hour:02d}:{minute:02d}").format(hour=int(hour), minute=int(minute))
    return _("custom")


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
