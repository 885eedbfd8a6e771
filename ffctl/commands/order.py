"""ffctl order list / show / hold / release / cancel / unflag."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState, format_option
from ffctl.i18n import N_, _, ngettext

app = typer.Typer(help=_("Find orders and see where each one is; hold, release, cancel."), no_args_is_help=True)

STATE_STYLES = {"on_track": "green", "at_risk": "yellow", "breached": "bold red", "on_hold": "magenta"}


def left_text(seconds) -> str:
    """Business time left, for people: '1h30m left' / '25m late' (two units at most: '29d21h late')."""
    from ffctl.core.durations import approx_duration

    if seconds is None:
        return "-"
    return (
        _("{duration} left").format(duration=approx_duration(seconds))
        if seconds >= 0
        else _("{duration} late").format(duration=approx_duration(-seconds))
    )


def priority_text(value) -> str:
    """A priority as people say it (low, normal, high, urgent), or the number past those."""
    from ffctl.core.csvio import PRIORITY_WORDS

    words = {n: word for word, n in PRIORITY_WORDS.items()}
    return words.get(value, "-" if value is None else str(value))


def state_text(state) -> str:
    if state is None:
        return "-"
    style = STATE_STYLES.get(state)
    return f"[{style}]{state}[/]" if style else state


def for_table(rows: list[dict], fmt) -> list[dict]:
    """Rows as a table shows them: a held task's deadline is not a time yet (it moves on release)."""
    from ffctl.commands._output import resolve_format

    if resolve_format(fmt) != "table":
        return rows
    shown = []
    for r in rows:
        r = dict(r)
        if r.get("state") == "on_hold":
            r["deadline"] = _("paused")
        if "owner" in r and r["owner"] is None:
            r["owner"] = _owner_text(None, r.get("auto"))
            if "assignees" in r and not r["assignees"]:
                r["assignees"] = r["owner"]
        shown.append(r)
    return shown


def _owner_text(owner, auto=None) -> str:
    return owner or (_("auto ({auto})").format(auto=auto) if auto else _("auto"))


@app.command("list", help=_("List orders, oldest first, with where each one is and how its SLA stands."))
def list_(
    ctx: typer.Context,
    node: str | None = typer.Option(None, "--node", help=_("Only orders at this node.")),
    status: str | None = typer.Option(
        None,
        "--status",
        help=_("open (nothing shipped yet), partially_shipped, on_hold, shipped, delivered or cancelled."),
    ),
    at_risk: bool = typer.Option(False, "--at-risk", help=_("Only orders whose current task is at risk.")),
    breached: bool = typer.Option(False, "--breached", help=_("Only orders whose current task is past its deadline.")),
    flag: str | None = typer.Option(None, "--flag", help=_("Only orders with this standing flag.")),
    customer: str | None = typer.Option(
        None, "--customer", metavar="CUSTOMER", help=_("Only this customer's orders (the customer id).")
    ),
    search: str | None = typer.Option(
        None,
        "--search",
        metavar="TEXT",
        help=_("Orders whose id, or whose customer's id or name, contains TEXT (any case)."),
    ),
    limit: int = typer.Option(200, "--limit", help=_("Show at most this many orders (0: all).")),
    fmt=format_option(),
) -> None:
    from ffctl.commands._output import Column, render, say_cut
    from ffctl.core.orders import list_orders

    st = AppState.of(ctx)
    cfg = st.config()
    with st.store().session() as s:
        rows, total = list_orders(
            s,
            cfg,
            st.now(),
            node=node,
            status=status,
            at_risk=at_risk,
            breached=breached,
            flag=flag,
            customer=customer,
            search=search,
            limit=limit,
        )
    columns = [
        Column("order_id", N_("order")),
        Column("customer", narrow_drop=3),
        Column("status"),
        Column("node"),
        Column("state", show=state_text),
        Column("deadline", narrow_drop=2),
        Column("seconds_left", N_("time left"), justify="right", show=left_text),
        Column("flags"),
        Column("promised_ship_date", N_("promised"), narrow_drop=1),
    ]
    render(for_table(rows, fmt), columns, fmt, tz=st.tz, empty=_("No orders match."))
    say_cut(len(rows), total, ngettext("order", "orders", total))


@app.command(help=_("Where an order is, who owns it, its lines with allocation, and its timeline."))
def show(
    ctx: typer.Context,
    order_id: str = typer.Argument(..., help=_("The order id.")),
    fmt=format_option(),
) -> None:
    from ffctl.commands._output import render_object
    from ffctl.core.orders import show_order

    st = AppState.of(ctx)
    cfg = st.config()
    with st.store().session() as s:
        order = show_order(s, cfg, order_id, st.now())
    render_object(order, fmt, tz=st.tz, table=lambda o: _show_table(o, st.tz))


def _show_table(o: dict, tz: str) -> None:
    from rich.panel import Panel
    from rich.table import Table

    from ffctl.commands._output import get_console, safe, table_cell

    console = get_console()
    cur = o.get("current_task")
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row(_("customer"), safe(f"{o['customer_name']} ({o['customer']})"))
    head.add_row(
        _("status"), _("{status}  workflow {workflow}").format(status=o["status"], workflow=o["workflow"] or "-")
    )
    if o["waiting_for"]:
        head.add_row("", f"[bold]{safe(o['waiting_for'])}[/]")
    facts = [_("priority {priority}").format(priority=priority_text(o["priority"]))] + [
        f"{name} {o[key]}"
        for name, key in ((_("channel"), "channel"), (_("region"), "region"), (_("sales rep"), "sales_rep"))
        if o[key]
    ]
    head.add_row("", safe("   ".join(facts)))
    head.add_row(_("created"), table_cell(o["created_at"], tz))
    if o["status"] == "on_hold":
        head.add_row(
            _("on hold"),
            safe(
                _("{reason}  (`ffctl order release {order}` resumes it)").format(
                    reason=o["hold_reason"] or "-", order=o["order_id"]
                )
            ),
        )
    if cur:
        head.add_row(_("now at"), safe(cur["node"]))
        owner = _owner_text(cur["owner"], cur["auto"])
        extra = [r for r in cur["assignees"] if r != cur["owner"]]
        people = f"  ({', '.join(cur['people'])})" if cur["people"] else ""
        head.add_row(
            _("owner"),
            safe(owner + (_(", escalated to {roles}").format(roles=", ".join(extra)) if extra else "") + people),
        )
        if cur["held_at"] is not None:
            head.add_row(
                _("deadline"),
                _("paused since {held_at}; {left} when released").format(
                    held_at=table_cell(cur["held_at"], tz), left=left_text(cur["seconds_left"])
                ),
            )
        else:
            head.add_row(_("deadline"), f"{table_cell(cur['deadline'], tz)} ({tz}), {left_text(cur['seconds_left'])}")
        head.add_row(_("state"), state_text(cur["state"]))
    elif o["status"] == "open":
        head.add_row(_("now at"), _("workflow finished"))
    head.add_row(_("promised"), table_cell(o["promised_ship_date"], tz))
    if o["shipped_at"]:
        via = [_("by {carrier}").format(carrier=o["carrier"])] if o["carrier"] else []
        via += [_("tracking {tracking}").format(tracking=o["tracking"])] if o["tracking"] else []
        head.add_row(_("shipped"), safe(", ".join([table_cell(o["shipped_at"], tz), *via])))
    if o["delivered_at"]:
        issue = _("issue: {issue}").format(issue=o["delivery_issue"]) if o["delivery_issue"] else _("no issue")
        head.add_row(_("delivered"), safe(f"{table_cell(o['delivered_at'], tz)}, {issue}"))
    if o.get("why_not_perfect"):
        from ffctl.core.misses import describe

        head.add_row(_("not perfect"), safe(describe(o["why_not_perfect"])))
    if o["cancelled_at"]:
        head.add_row(_("cancelled"), safe(f"{table_cell(o['cancelled_at'], tz)}: {o['cancel_reason'] or '-'}"))
    if o["flags"]:
        head.add_row(_("flags"), f"[bold red]{safe(', '.join(o['flags']))}[/]")
    console.print(Panel(head, title=_("order {safe}").format(safe=safe(o["order_id"])), expand=False))

    lines = Table(title=_("lines"), header_style="bold")
    for name, justify in (
        (N_("line"), "right"),
        (N_("sku"), "left"),
        (N_("qty"), "right"),
        (N_("allocated"), "right"),
        (N_("shipped"), "right"),
        (N_("cancelled"), "right"),
        (N_("backordered"), "right"),
        (N_("available to promise"), "left"),
    ):
        lines.add_column(_(name), justify=justify)
    for line in o["lines"]:
        atp = table_cell(line["atp_date"], tz) if line["atp_date"] else (line.get("atp_note") or "")
        lines.add_row(
            str(line["line_no"]),
            safe(line["sku"]),
            str(line["qty"]),
            str(line["allocated"]),
            str(line["shipped"]) if line["shipped"] else "-",
            str(line["cancelled"]) if line["cancelled"] else "-",
            str(line["backordered"]) if line["backordered"] else "-",
            safe(atp),
        )
    console.print(lines)

    if o["shipments"]:
        shipments = Table(title=_("shipments"), header_style="bold")
        for name in (_("shipment"), _("when"), _("carrier"), _("tracking"), _("lines")):
            shipments.add_column(name, overflow="fold")
        for sh in o["shipments"]:
            what = ", ".join(f"L{ln['line_no']} {ln['sku']} × {ln['qty']}" for ln in sh["lines"])
            shipments.add_row(
                safe(sh["shipment_id"]),
                table_cell(sh["at"], tz),
                safe(sh["carrier"] or "-"),
                safe(sh["tracking"] or "-"),
                safe(what),
            )
        console.print(shipments)

    if o.get("returns"):
        returns = Table(title=_("returns"), header_style="bold")
        for name in (_("when"), _("line"), _("sku"), _("qty"), _("reason"), _("restocked in")):
            returns.add_column(name, overflow="fold")
        for r in o["returns"]:
            returns.add_row(
                table_cell(r["returned_at"], tz),
                str(r["line_no"]),
                safe(r["sku"]),
                str(r["qty"]),
                safe(r["reason"]),
                safe(r["warehouse"] or "-"),
            )
        console.print(returns)

    timeline = Table(title=_("timeline"), header_style="bold")
    for name in (_("when"), _("event"), _("node"), _("who"), _("what")):
        timeline.add_column(name, overflow="fold")
    for e in o["timeline"]:
        timeline.add_row(
            table_cell(e["at"], tz), _event_text(e), safe(e["node"] or ""), safe(e["actor"]), safe(e["detail"] or "")
        )
    console.print(timeline)


_EVENT_STYLES = {
    "breached": "bold red",
    "escalated": "red",
    "auto_rejected": "red",
    "rejected": "yellow",
    "at_risk": "yellow",
    "forecast": "yellow",
    "held": "magenta",
    "released": "magenta",
    "flagged": "bold red",
    "cancelled": "red",
    "completed": "green",
    "shipped": "green",
    "delivered": "green",
}


def _event_text(e: dict) -> str:
    from ffctl.commands._output import safe as escape

    style = _EVENT_STYLES.get(e["event"])
    if e["event"] == "completed" and e["detail"] and "SLA breached" in e["detail"]:
        style = "yellow"
    return f"[{style}]{escape(e['event'])}[/]" if style else escape(e["event"])


@app.command(help=_("Put an order on hold: every SLA clock of the order pauses."))
def hold(
    ctx: typer.Context,
    order_id: str = typer.Argument(..., help=_("The order id.")),
    reason: str = typer.Option(..., "--reason", help=_("Why the order is held (recorded in its timeline).")),
) -> None:
    from ffctl.commands._output import message
    from ffctl.core import workflow

    st = AppState.of(ctx)
    cfg = st.config()
    with st.store().session(write=True) as s:
        workflow.hold(s, cfg, order_id, at=st.now(), actor=st.user, reason=reason)
    from ffctl.core.text import command

    message(
        _("{order_id}: on hold ({reason}); its SLA clocks are paused until `{command}`.").format(
            order_id=order_id, reason=reason, command=command("order", "release", order_id)
        )
    )


@app.command(help=_("Release a held order: its clocks resume with the business time that was left."))
def release(
    ctx: typer.Context,
    order_id: str = typer.Argument(..., help=_("The order id.")),
) -> None:
    from ffctl.commands._output import message
    from ffctl.core import workflow

    st = AppState.of(ctx)
    cfg = st.config()
    with st.store().session(write=True) as s:
        workflow.release(s, cfg, order_id, at=st.now(), actor=st.user)
        task = workflow.current_task(s, order_id)
        view = workflow.task_view(task, cfg, st.now()) if task is not None and task.node in cfg.nodes else None
        node = task.node if task is not None else None
    tail = _(" at {node}, {left}").format(node=node, left=left_text(view["seconds_left"])) if view else ""
    message(_("{order_id}: released{tail}.").format(order_id=order_id, tail=tail))


@app.command(
    help=_(
        "Cancel an order (its reservations are released and its open tasks closed), or with --line\n"
        "what is left of some of its lines."
    )
)
def cancel(
    ctx: typer.Context,
    order_id: str = typer.Argument(..., help=_("The order id.")),
    reason: str = typer.Option(..., "--reason", help=_("Why the order is cancelled (recorded in its timeline).")),
    line: list[str] | None = typer.Option(
        None,
        "--line",
        metavar="LINE_NO[:QTY]",
        help=_("Cancel only what is left of order line LINE_NO (QTY of its units; repeatable)."),
    ),
) -> None:
    from ffctl.commands._output import message

    st = AppState.of(ctx)
    cfg = st.config()
    if line:
        from ffctl.core.shipping import cancel_lines, parse_line_spec

        specs = [parse_line_spec(x, qty_optional=True) for x in line]
        with st.store().session(write=True) as s:
            result = cancel_lines(s, cfg, order_id, specs, at=st.now(), actor=st.user, reason=reason)
        n = result["released"]
        what = ", ".join(_("line {line}: {n}").format(line=x["line_no"], n=x["cancelled"]) for x in result["lines"])
        released = ngettext("; released {n} reserved unit", "; released {n} reserved units", n).format(n=n) if n else ""
        tail = (
            _("; every unit is now shipped or cancelled: the order is shipped")
            if result["status"] == "shipped"
            else ngettext("; {n} unit still to ship", "; {n} units still to ship", result["still_to_ship"]).format(
                n=result["still_to_ship"]
            )
        )
        message(
            _("{order}: cancelled {what}{released}{tail}.").format(
                order=order_id, what=what, released=released, tail=tail
            )
        )
        return
    from ffctl.core.orders import cancel_order

    with st.store().session(write=True) as s:
        result = cancel_order(s, cfg, order_id, at=st.now(), actor=st.user, reason=reason)
    n = result["released"]
    released = ngettext("; released {n} reserved unit", "; released {n} reserved units", n).format(n=n) if n else ""
    message(_("{order_id}: cancelled{released}.").format(order_id=order_id, released=released))


@app.command(help=_("Clear a standing flag from an order (it stays in the timeline)."))
def unflag(
    ctx: typer.Context,
    order_id: str = typer.Argument(..., help=_("The order id.")),
    flag: str = typer.Argument(..., help=_("The standing flag to clear (e.g. shipping_exception).")),
) -> None:
    from ffctl.commands._output import message
    from ffctl.core.orders import unflag as clear

    st = AppState.of(ctx)
    with st.store().session(write=True) as s:
        clear(s, order_id, flag, at=st.now(), actor=st.user, tz=st.tz)
    message(_("{order_id}: flag {flag} cleared.").format(order_id=order_id, flag=flag))
