"""ffctl sla sweep / status."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState, format_option
from ffctl.i18n import ngettext

app = typer.Typer(help="The SLA sweep (cron) and the SLA status board.", no_args_is_help=True)

_SWEEP_ROWS = (("at_risk", "newly at risk"), ("breached", "newly breached"))
_ACTION_WORDS = {"remind": "reminders", "escalate": "escalations", "notify": "notify steps",
                 "auto_approve": "auto-approved", "auto_reject": "auto-rejected"}


@app.command()
def sweep(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what a sweep now would do; change nothing."),
    no_send: bool = typer.Option(False, "--no-send", help="Only queue notifications; leave delivery to `ffctl notify send`."),
    no_rules: bool = typer.Option(False, "--no-rules", help="Skip the rule engine (`ffctl rules run` runs it alone)."),
    fmt=format_option(),
) -> None:
    """Flag at-risk and breached tasks, run the escalation ladders, run the rules, then send.

    Every step due by the command clock (--now) fires once and only once, even when sweeps
    overlap, one was killed, or runs were missed. Each person gets at most one message per
    channel: several orders make one digest. Exit code 0 even when there were breaches.
    """
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
        message("Dry run: nothing was changed.")
    if report.busy:
        message(ngettext("Warning: {n} due task stayed locked by another transaction; the next sweep takes it.",
                         "Warning: {n} due tasks stayed locked by other transactions; the next sweep takes them.",
                         report.busy).format(n=report.busy))
    if delivery is not None and (delivery.failed or delivery.retrying):
        undelivered = delivery.failed + delivery.retrying
        message(ngettext("{n} notification could not be delivered; see `ffctl notify list --status pending` and `--failed`.",
                         "{n} notifications could not be delivered; see `ffctl notify list --status pending` and `--failed`.",
                         undelivered).format(n=undelivered))


def _csv_items(items: list[dict], tz: str) -> None:
    from ffctl.commands._output import render

    render(items, _item_columns(), "csv", tz=tz)


def _item_columns():
    from ffctl.commands._output import Column

    return [Column("order_id", "order"), Column("node"),
            Column("what"), Column("due_at", "due"), Column("detail"),
            Column("task_id", "task", justify="right")]


def _sweep_table(result: dict, tz: str) -> None:
    from rich.table import Table

    from ffctl.commands._output import get_console, render
    from ffctl.core.clock import local

    console = get_console()
    when = local(result["now"], tz).strftime("%Y-%m-%d %H:%M")
    title = f"SLA sweep at {when}" + (" (dry run)" if result["dry_run"] else "")
    summary = Table(title=title, show_header=False, title_justify="left")
    summary.add_column("what")
    summary.add_column("count", justify="right")
    for key, words in _SWEEP_ROWS:
        summary.add_row(words, _count(result[key], "yellow" if key == "at_risk" else "red"))
    for action, words in _ACTION_WORDS.items():
        summary.add_row(words, _count(result["actions"][action], "bold"))
    summary.add_row("rule hits", _count(result["rule_hits"], "bold"))
    summary.add_row("notifications queued", str(result["notifications_queued"]))
    if "notifications_sent" in result:
        summary.add_row("notifications sent", str(result["notifications_sent"]))
    console.print(summary)
    if result["items"]:
        render(result["items"], _item_columns(), "table", tz=tz)
    else:
        console.print("Nothing was due.")


def _count(n: int, style: str) -> str:
    return f"[{style}]{n}[/]" if n else "0"


@app.command()
def status(ctx: typer.Context, fmt=format_option()) -> None:
    """Per node, in workflow order: open tasks, on hold, at risk, breached, escalated.

    Counted from the clocks against the command clock, so it is right whether or not a sweep ran:
    breached is an open task past its deadline (a held one if its hold began after the deadline).
    `report sla` counts the closed visits too.
    """
    from ffctl.commands._output import Column, render, safe
    from ffctl.core import sla

    st = AppState.of(ctx)
    cfg = st.config()
    with st.store().session() as s:
        rows = sla.status(s, cfg, now=st.now())

    def warn(style):
        return lambda v: f"[{style}]{v}[/]" if v else "0"

    columns = [
        Column("node"), Column("owner", show=lambda v: safe(v or "auto")), Column("open", justify="right"),
        Column("on_hold", "on hold", justify="right"), Column("at_risk", "at risk", justify="right", show=warn("yellow")),
        Column("breached", justify="right", show=warn("red")), Column("escalated", justify="right", show=warn("magenta")),
    ]
    render(rows, columns, fmt, tz=st.tz, empty="No workflow nodes in the config.")
