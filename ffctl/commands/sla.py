"""ffctl sla sweep / status."""

from __future__ import annotations

from enum import Enum

import typer

from ffctl.commands._common import AppState, format_option
from ffctl.i18n import N_, _, ngettext

app = typer.Typer(help=_("The SLA sweep (cron), the SLA status board and the breach forecast."), no_args_is_help=True)

# labels are translated where shown (the CSV of `sla replay` keeps them as they are)
_SWEEP_ROWS = (("at_risk", N_("newly at risk")), ("breached", N_("newly breached")))
_ACTION_WORDS = {
    "remind": N_("reminders"),
    "escalate": N_("escalations"),
    "notify": N_("notify steps"),
    "auto_approve": N_("auto-approved"),
    "auto_reject": N_("auto-rejected"),
}


@app.command(
    help=_(
        "Flag at-risk and breached tasks, run the escalation ladders, run the rules, then send.\n"
        "\n"
        "Every step due by the command clock (--now) fires once and only once, even when sweeps\n"
        "overlap, one was killed, or runs were missed. Each person gets at most one message per\n"
        "channel: several orders make one digest. Exit code 0 even when there were breaches."
    )
)
def sweep(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help=_("Report what a sweep now would do; change nothing.")),
    no_send: bool = typer.Option(
        False, "--no-send", help=_("Only queue notifications; leave delivery to `ffctl notify send`.")
    ),
    no_rules: bool = typer.Option(
        False, "--no-rules", help=_("Skip the rule engine (`ffctl rules run` runs it alone).")
    ),
    fmt=format_option(),
) -> None:
    from ffctl.commands._output import dumps, message, resolve_format
    from ffctl.core import sla

    st = AppState.of(ctx)
    cfg = st.config()
    store = st.store()
    now = st.now()
    report = sla.sweep(store, cfg, now=now, actor=sla.SWEEP_ACTOR, dry_run=dry_run, rules=not no_rules)
    result = report.as_dict()
    delivery = None
    if not dry_run and not no_send:
        from ffctl.core import notify

        delivery = notify.send(store, cfg, now=now)
        result["notifications_sent"] = delivery.sent
        result["notifications_failed"] = delivery.failed + delivery.retrying
    kind = resolve_format(fmt)
    if kind == "json":
        print(dumps(result, st.tz))
    elif kind == "csv":
        _csv_items(result["items"], st.tz)
    else:
        _sweep_table(result, st.tz)
    if dry_run:
        message(_("Dry run: nothing was changed."))
    if report.busy:
        message(
            ngettext(
                "Warning: {n} due task stayed locked by another transaction; the next sweep takes it.",
                "Warning: {n} due tasks stayed locked by other transactions; the next sweep takes them.",
                report.busy,
            ).format(n=report.busy)
        )
    if delivery is not None and (delivery.failed or delivery.retrying):
        undelivered = delivery.failed + delivery.retrying
        message(
            ngettext(
                "{n} notification could not be delivered; see `ffctl notify list --status pending` and `--failed`.",
                "{n} notifications could not be delivered; see `ffctl notify list --status pending` and `--failed`.",
                undelivered,
            ).format(n=undelivered)
        )


def _csv_items(items: list[dict], tz: str) -> None:
    from ffctl.commands._output import render

    render(items, _item_columns(), "csv", tz=tz)


def _item_columns():
    from ffctl.commands._output import Column

    return [
        Column("order_id", N_("order")),
        Column("node"),
        Column("what"),
        Column("due_at", N_("due")),
        Column("detail"),
        Column("task_id", "task", justify="right"),
    ]


def _sweep_table(result: dict, tz: str) -> None:
    from rich.table import Table

    from ffctl.commands._output import get_console, render
    from ffctl.core.clock import local

    console = get_console()
    when = local(result["now"], tz).strftime("%Y-%m-%d %H:%M")
    title = (_("SLA sweep at {when} (dry run)") if result["dry_run"] else _("SLA sweep at {when}")).format(when=when)
    summary = Table(title=title, show_header=False, title_justify="left")
    summary.add_column(_("what"))
    summary.add_column(_("count"), justify="right")
    for key, words in _SWEEP_ROWS:
        summary.add_row(_(words), _count(result[key], "yellow" if key == "at_risk" else "red"))
    for action, words in _ACTION_WORDS.items():
        summary.add_row(_(words), _count(result["actions"][action], "bold"))
    summary.add_row(_("forecast alerts"), _count(result.get("forecast_alerts", 0), "yellow"))
    summary.add_row(_("rule hits"), _count(result["rule_hits"], "bold"))
    summary.add_row(_("notifications queued"), str(result["notifications_queued"]))
    if "notifications_sent" in result:
        summary.add_row(_("notifications sent"), str(result["notifications_sent"]))
    console.print(summary)
    if result["items"]:
        render(result["items"], _item_columns(), "table", tz=tz)
    else:
        console.print(_("Nothing was due."))


def _count(n: int, style: str) -> str:
    return f"[{style}]{n}[/]" if n else "0"


@app.command(
    help=_(
        "Per node, in workflow order: open tasks, on hold, at risk, breached, escalated.\n"
        "\n"
        "Counted from the clocks against the command clock, so it is right whether or not a sweep ran:\n"
        "breached is an open task past its deadline (a held one if its hold began after the deadline).\n"
        "`report sla` counts the closed visits too."
    )
)
def status(ctx: typer.Context, fmt=format_option()) -> None:
    from ffctl.commands._output import Column, render, safe
    from ffctl.core import sla

    st = AppState.of(ctx)
    cfg = st.config()
    with st.store().session() as s:
        rows = sla.status(s, cfg, now=st.now())

    def warn(style):
        return lambda v: f"[{style}]{v}[/]" if v else "0"

    columns = [
        Column("node"),
        Column("owner", show=lambda v: safe(v or _("auto"))),
        Column("open", justify="right"),
        Column("on_hold", N_("on hold"), justify="right"),
        Column("at_risk", N_("at risk"), justify="right", show=warn("yellow")),
        Column("breached", justify="right", show=warn("red")),
        Column("escalated", justify="right", show=warn("magenta")),
    ]
    render(rows, columns, fmt, tz=st.tz, empty=_("No workflow nodes in the config."))


# --- sla replay --------------------------------------------------------------------------------


class Grouping(str, Enum):
    node = "node"
    workflow = "workflow"
    role = "role"


_REPLAY_METRICS = (
    ("breached", N_("breached")),
    ("attainment", N_("attainment")),
    ("late_p90_seconds", N_("late p90")),
    ("at_risk", N_("at risk")),
)


@app.command(
    help=_(
        "What the period's SLA history would have been under CANDIDATE.toml, beside the current config.\n"
        "\n"
        "Every node visit that entered in the period is evaluated under both configs with the sweep's\n"
        "own clock: breached, attainment, p90 lateness, at-risk warnings, escalation steps per action\n"
        "and automatic actions, with the recorded figures beside the current column. People's recorded\n"
        "completion times and holds are kept; the assumptions are printed under the table. Reads only:\n"
        "it writes nothing and runs on a read-only store or standby.\n"
        "\n"
        "JSON: from, to, changes (as `config diff` words them), rows and totals (group, visits,\n"
        "visits_candidate (differs with --by role when owners change), each metric as recorded,\n"
        "current, candidate, delta), changed_path_orders (auto actions, rerouting by match),\n"
        "assumptions; --orders adds orders. Exit 2 when CANDIDATE.toml fails `config check`,\n"
        "1 when no visit entered in the period."
    )
)
def replay(
    ctx: typer.Context,
    candidate: str = typer.Argument(..., metavar="CANDIDATE.toml", help=_("The proposed config.")),
    start: str = typer.Option(
        None,
        "--from",
        metavar="DATE|TIME",
        help=_("Visits that entered from this date or time on [default: 30 days before --to]."),
    ),
    end: str = typer.Option(
        None,
        "--to",
        metavar="DATE|TIME",
        help=_("Visits that entered up to this date (inclusive) or before this time [default: the clock]."),
    ),
    by: Grouping = typer.Option(
        Grouping.node, "--by", help=_("Group the figures by node, workflow or role."), case_sensitive=False
    ),
    orders: bool = typer.Option(False, "--orders", help=_("List the orders whose path would change, and why.")),
    fmt=format_option(),
) -> None:
    from ffctl.commands._output import dumps, message, resolve_format
    from ffctl.core import configdiff
    from ffctl.core import replay as replay_core
    from ffctl.core.config import load_config
    from ffctl.core.errors import UsageError
    from ffctl.core.kpi import parse_period

    st = AppState.of(ctx)
    cfg = st.config()
    proposed = load_config(candidate)  # a candidate that fails `config check` stops here (exit 2)
    try:
        given = parse_period(start, end, st.tz)
        period = replay_core.default_period(given.start, given.end, st.now())
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    changes = [c["text"] for c in configdiff.diff(cfg, proposed)]
    with st.store().session() as s:
        result = replay_core.replay(
            s, cfg, proposed, period=period, now=st.now(), by=by.value, list_orders=orders, changes=changes
        )
    kind = resolve_format(fmt)
    if kind == "json":
        print(dumps(result, st.tz))
        return
    if kind == "csv":
        _replay_csv(result, st.tz)
        return
    _replay_table(result, st.tz)
    if not changes:
        message(_("The candidate changes nothing the replay looks at: both columns are the current config."))


def _replay_lines(result: dict):
    """(group, metric, recorded, current, candidate, delta) for every group, then the totals."""
    for row in [*result["rows"], {**result["totals"], "group": N_("total")}]:
        group = row["group"] if row["group"] is not None else N_("(none)")
        yield (
            group,
            N_("visits"),
            row["visits"],
            row["visits"],
            row["visits_candidate"],
            row["visits_candidate"] - row["visits"],
        )
        for key, words in _REPLAY_METRICS:
            m = row[key]
            yield group, words, m["recorded"], m["current"], m["candidate"], m["delta"]
        for action, m in row["steps"].items():
            yield group, _ACTION_WORDS[action], m["recorded"], m["current"], m["candidate"], m["delta"]


def _replay_csv(result: dict, tz: str) -> None:
    from ffctl.commands._output import Column, render

    keys = ("group", "metric", "recorded", "current", "candidate", "delta")
    render([dict(zip(keys, line)) for line in _replay_lines(result)], [Column(k) for k in keys], "csv", tz=tz)


def _replay_cell(metric: str, value, *, delta: bool = False) -> str:
    from ffctl.core.durations import format_duration

    if value is None:
        return "-"
    if delta and not value:
        return "0"
    sign = "+" if delta and value > 0 else "-" if delta and value < 0 else ""
    if metric == "attainment":
        return f"{sign}{abs(value) * 100:.1f}{' pts' if delta else '%'}"
    if metric == "late p90":
        return f"{sign}{format_duration(abs(value))}" if value else "0"
    return f"{sign}{abs(value):,}" if delta else f"{value:,}"


def _replay_table(result: dict, tz: str) -> None:
    from rich.table import Table

    from ffctl.commands._output import get_console, safe
    from ffctl.core.clock import shown

    console = get_console()
    title = _("SLA replay of visits entered {start} to {end}").format(
        start=shown(result["from"], tz), end=shown(result["to"], tz)
    )
    table = Table(title=title, title_justify="left")
    for header, justify in (
        (_(result["by"]), "left"),
        ("", "left"),
        (_("recorded"), "right"),
        (_("current"), "right"),
        (_("candidate"), "right"),
        ("Δ", "right"),
    ):
        table.add_column(header, justify=justify)
    previous = None
    for group, metric, rec, cur, cand, delta in _replay_lines(result):
        if previous is not None and group != previous:
            table.add_section()
        shown_delta = _replay_cell(metric, delta, delta=True)
        if delta:
            better = delta < 0 if metric not in ("attainment", "visits") else delta > 0
            shown_delta = f"[{'green' if better else 'red'}]{shown_delta}[/]"
        label = _(group) if group in ("total", "(none)") else group
        table.add_row(
            safe(label) if group != previous else "",
            _(metric),
            _replay_cell(metric, rec),
            _replay_cell(metric, cur),
            _replay_cell(metric, cand),
            shown_delta,
        )
        previous = group
    console.print(table)
    if result["changes"]:
        console.print(_("Changes in the candidate:"))
        for text in result["changes"]:
            console.print(_("  {safe}").format(safe=safe(text)))
    console.print(
        _("Orders whose path would change: {n}").format(n=f"{result['changed_path_orders']:,}")
        + ("" if "orders" in result or not result["changed_path_orders"] else _(" (--orders lists them)"))
    )
    for o in result.get("orders", []):
        console.print(_("  {safe}: {safe2}").format(safe=safe(o["order_id"]), safe2=safe("; ".join(o["why"]))))
    console.print(_("Assumptions:"))
    for text in result["assumptions"]:
        console.print(_("  - {safe}").format(safe=safe(text)))


@app.command(
    help=_(
        "Open tasks likely to breach, most likely first, each with its reason in words.\n"
        "\n"
        "p_breach comes from the node's own history (business time of the visits completed in\n"
        "the last 30 days, given how long the task has already run), the tasks ahead of it in its\n"
        "node's queue and how fast the node completes them. With --backtest: replays the period at\n"
        "15-minute steps, predicting each instant from visits completed before it only, and prints\n"
        "precision, recall, F1 and median lead time beside the warn_at rule on the same tasks."
    )
)
def forecast(
    ctx: typer.Context,
    node: str | None = typer.Option(None, "--node", help=_("Only tasks at this node.")),
    role: str | None = typer.Option(None, "--role", help=_("Only tasks assigned (owner or escalation) to this role.")),
    threshold: float = typer.Option(
        0.5, "--threshold", min=0.0, max=1.0, help=_("Only tasks at least this likely to breach (0 shows every task).")
    ),
    backtest: bool = typer.Option(
        False, "--backtest", help=_("Replay a past period and score the forecast against the warn_at rule.")
    ),
    start: str | None = typer.Option(
        None, "--from", metavar="DATE|TIME", help=_("--backtest: the period's start [default: 30 days before --to].")
    ),
    end: str | None = typer.Option(
        None,
        "--to",
        metavar="DATE|TIME",
        help=_("--backtest: the period's end, a date inclusive [default: the command clock]."),
    ),
    fmt=format_option(),
) -> None:
    from datetime import timedelta

    from ffctl.commands._output import Column, render, render_object, resolve_format
    from ffctl.core import forecast as model
    from ffctl.core.errors import UsageError
    from ffctl.core.orders import check_node

    st = AppState.of(ctx)
    cfg = st.config()
    check_node(cfg, node)
    if role is not None and role not in cfg.roles:
        raise UsageError(
            _("--role {role!r}: no such role; the config has {roles}").format(role=role, roles=", ".join(cfg.roles))
        )
    now = st.now()
    if not backtest:
        if start is not None or end is not None:
            raise UsageError(_("--from and --to go with --backtest (the forecast itself is at the command clock)"))
        with st.store().session() as s:
            rows = model.forecast(s, cfg, now, node=node, role=role, threshold=threshold)
        columns = [
            Column("order_id", N_("order")),
            Column("node"),
            Column("p_breach", N_("p(breach)"), justify="right", show=lambda p: "-" if p is None else f"{p:.0%}"),
            Column("deadline"),
            Column("ahead", justify="right"),
            Column("reason"),
        ]
        if resolve_format(fmt) != "table":
            columns = [
                Column(k)
                for k in (
                    "order_id",
                    "task_id",
                    "node",
                    "owner",
                    "deadline",
                    "p_breach",
                    "ahead",
                    "seconds_left",
                    "waited_seconds",
                    "pace_per_hour",
                    "history",
                    "reason",
                )
            ]
        render(
            rows,
            columns,
            fmt,
            tz=st.tz,
            empty=_("No open task is at least {p:.0%} likely to breach.").format(p=threshold),
        )
        return
    if role is not None:
        raise UsageError(_("--role does not go with --backtest; --node narrows a backtest"))
    from ffctl.core.kpi import parse_period

    try:
        period = parse_period(start, end, st.tz)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    stop = period.end or now
    begin = period.start or stop - timedelta(days=30)
    if stop <= begin:
        raise UsageError(_("--to must come after --from"))
    with st.store().session() as s:
        result = model.backtest(s, cfg, start=begin, end=stop, now=now, threshold=threshold, node=node)
    render_object(result, fmt, tz=st.tz, table=lambda r: _backtest_table(r, st.tz))


def _backtest_table(result: dict, tz: str) -> None:
    from ffctl.commands._output import Column, get_console, render
    from ffctl.core.clock import shown
    from ffctl.core.durations import approx_duration

    def pct(x):
        return "-" if x is None else f"{x:.0%}"

    def lead(x):
        return "-" if x is None else approx_duration(x)

    rows = []
    for label, part in [("all", result)] + [(n["node"], n) for n in result["nodes"]]:
        for model, words in (("forecast", _("forecast")), ("warn_at", _("warn_at rule"))):
            figures = part[model]
            rows.append(
                {
                    "node": label,
                    "tasks": part["tasks"],
                    "breached": part["breached"],
                    "by": words,
                    "warned": figures["warned"],
                    "precision": figures["precision"],
                    "recall": figures["recall"],
                    "f1": figures["f1"],
                    "lead": figures["median_lead_seconds"],
                }
            )
    get_console().print(
        _("Backtest {start} to {end}, a prediction every 15 minutes, threshold {p:.0%}").format(
            start=shown(result["from"], tz), end=shown(result["to"], tz), p=result["threshold"]
        )
    )
    render(
        rows,
        [
            Column("node"),
            Column("tasks", justify="right"),
            Column("breached", justify="right"),
            Column("by"),
            Column("warned", justify="right"),
            Column("precision", justify="right", show=pct),
            Column("recall", justify="right", show=pct),
            Column("f1", "F1", justify="right", show=pct),
            Column("lead", _("median lead"), justify="right", show=lead),
        ],
        "table",
        tz=tz,
    )
