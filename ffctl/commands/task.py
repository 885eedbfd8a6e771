"""ffctl task list: the inbox."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState, format_option
from ffctl.i18n import N_, _, ngettext

app = typer.Typer(help=_("The inbox: open node tasks with owner, deadline and time left."), no_args_is_help=True)


@app.callback(help=_("The inbox: open node tasks with owner, deadline and time left."))
def task() -> None:
    pass


@app.command(
    "list",
    help=_(
        "Open tasks, most urgent first: breached, then by deadline; held orders last.\n"
        "\n"
        "Without options, the tasks of your roles (owned, or escalated to them)."
    ),
)
def list_(
    ctx: typer.Context,
    mine: bool = typer.Option(
        False,
        "--mine",
        help=_("Only tasks assigned to a role you are a member of (the default without --role or --all)."),
    ),
    role: str | None = typer.Option(None, "--role", help=_("Only tasks assigned (owner or escalation) to this role.")),
    everyone: bool = typer.Option(
        False, "--all", help=_("Every open task, whoever it is assigned to (members of admin).")
    ),
    at_risk: bool = typer.Option(False, "--at-risk", help=_("Only tasks past their warning point.")),
    breached: bool = typer.Option(False, "--breached", help=_("Only tasks past their deadline.")),
    limit: int = typer.Option(200, "--limit", help=_("Show at most this many tasks (0: all).")),
    fmt=format_option(),
) -> None:
    from ffctl.commands._output import Column, message, render, resolve_format, say_cut
    from ffctl.commands.order import for_table, left_text, priority_text, state_text
    from ffctl.core.inbox import list_tasks, only_mine, roles_of

    st = AppState.of(ctx)
    cfg = st.config()
    mine = only_mine(cfg, st.user, mine=mine, role=role, everyone=everyone)
    if mine and not roles_of(cfg, st.user):
        message(
            _(
                "{user} is not a member of any role in {config}, so no task is theirs; "
                "--role ROLE lists a role's tasks."
            ).format(user=st.user, config=st.config_path)
        )
    with st.store().session() as s:
        rows, counts = list_tasks(
            s, cfg, st.now(), user=st.user, mine=mine, role=role, at_risk=at_risk, breached=breached, limit=limit
        )
    kind = resolve_format(fmt)
    if kind == "table":
        columns = [
            Column("order_id", N_("order")),
            Column("customer", narrow_drop=4),
            Column("priority", show=priority_text, narrow_drop=2),
            Column("node"),
            Column("assignees", _("assigned to")),
            Column("entered_at", N_("entered"), narrow_drop=1),
            Column("promised_ship_date", _("promised"), narrow_drop=3),
            Column("deadline"),
            Column("state", show=state_text),
            Column("seconds_left", N_("time left"), justify="right", show=left_text),
            Column(
                "p_breach",
                _("p(breach)"),
                justify="right",
                show=lambda p: "-" if p is None else f"{p:.0%}",
                narrow_drop=5,
            ),
        ]
    else:
        columns = [
            Column(key)
            for key in (
                "order_id",
                "customer",
                "priority",
                "node",
                "owner",
                "assignees",
                "entered_at",
                "promised_ship_date",
                "deadline",
                "state",
                "seconds_left",
                "p_breach",
                "p_breach_reason",
            )
        ]
    render(for_table(rows, fmt), columns, fmt, tz=st.tz, empty=_("No open tasks match."))
    say_cut(len(rows), counts["total"], ngettext("task", "tasks", counts["total"]))
    if kind == "table" and counts["total"]:
        message(
            ngettext("{n:,} task, {breached:,} breached", "{n:,} tasks, {breached:,} breached", counts["total"]).format(
                n=counts["total"], breached=counts["breached"]
            )
        )
