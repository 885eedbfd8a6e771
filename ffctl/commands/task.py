"""ffctl task list: the inbox."""

from __future__ import annotations

from typing import Optional

import typer

from ffctl.commands._common import AppState, format_option

app = typer.Typer(help="The inbox: open node tasks with owner, deadline and time left.", no_args_is_help=True)


@app.callback()
def task() -> None:
    """The inbox: open node tasks with owner, deadline and time left."""


@app.command("list")
def list_(
    ctx: typer.Context,
    mine: bool = typer.Option(False, "--mine", help="Only tasks assigned to a role you are a member of."),
    role: Optional[str] = typer.Option(None, "--role", help="Only tasks assigned (owner or escalation) to this role."),
    at_risk: bool = typer.Option(False, "--at-risk", help="Only tasks past their warning point."),
    breached: bool = typer.Option(False, "--breached", help="Only tasks past their deadline."),
    limit: int = typer.Option(200, "--limit", help="Show at most this many tasks (0: all)."),
    fmt=format_option(),
) -> None:
    """Open tasks, most urgent first: breached, then by deadline; held orders last."""
    from ffctl.commands._output import Column, message, render
    from ffctl.commands.order import for_table, left_text, state_text
    from ffctl.core.inbox import list_tasks, roles_of

    st = AppState.of(ctx)
    cfg = st.config()
    if mine and not roles_of(cfg, st.user):
        message(f"{st.user} is not a member of any role in {st.config_path}, so no task is theirs.")
    with st.store().session() as s:
        rows, truncated = list_tasks(s, cfg, st.now(), user=st.user, mine=mine, role=role, at_risk=at_risk,
                                     breached=breached, limit=limit)
    columns = [
        Column("order_id", "order"), Column("node"),
        Column("owner", narrow_drop=1), Column("assignees"),  # assignees begin with the owner
        Column("entered_at", "entered", narrow_drop=2), Column("deadline"), Column("state", show=state_text),
        Column("seconds_left", "time left", justify="right", show=left_text),
    ]
    render(for_table(rows, fmt), columns, fmt, tz=st.tz, empty="No open tasks match.")
    if truncated:
        message(f"Showing the {limit} most urgent tasks; more match (--limit 0 shows all).")
