"""ffctl report kpi / sla / dashboard: fulfillment KPIs against targets (SPEC §7)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from ffctl.commands._common import AppState, Format, format_option
from ffctl.i18n import N_, _, ngettext

app = typer.Typer(
    help=_("KPIs against targets, workload per role, the paths orders take, the dashboard."), no_args_is_help=True
)


class Dimension(str, Enum):
    product = "product"
    category = "category"
    region = "region"
    channel = "channel"
    team = "team"
    customer = "customer"
    node = "node"
    week = "week"
    workflow = "workflow"


class WorkloadBy(str, Enum):
    role = "role"
    person = "person"


FROM_HELP = _("Orders created from this date or time on (a date means its start, in the configured zone).")
TO_HELP = _("Orders created up to this date (inclusive) or before this time.")
KPI_COLUMNS = ("kpi", "group", "baseline", "actual", "target", "gap", "count", "p90", "unit", "met", "node")
SLA_COLUMNS = (
    "node",
    "owner",
    "completed",
    "within_sla",
    "attainment",
    "target",
    "met",
    "p50_seconds",
    "p90_seconds",
    "sla_seconds",
    "breaches",
    "late_p50_seconds",
    "late_p90_seconds",
    "escalations",
    "reminders",
    "auto_actions",
    "bottleneck",
)


def _period(st: AppState, start: str | None, end: str | None):
    from ffctl.core.errors import UsageError
    from ffctl.core.kpi import parse_period

    try:
        return parse_period(start, end, st.tz)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _refreshed(st: AppState, start: str | None, end: str | None, cuts: tuple[str | None, ...] = (None,)):
    """A report's config and period, with the facts brought up to date (a read-only store says so)."""
    from ffctl.core.kpi import refresh_facts

    cfg = st.config()
    period = _period(st, start, end)
    _say_if_read_only(st, refresh_facts(st.store(), cfg, cuts=cuts, now=st.now()))
    return cfg, period


@app.command(
    help=_(
        "KPIs against their targets (actual, target, gap, count), and the bottleneck node.\n"
        "\n"
        "gap = actual - target: a time KPI misses its target when the gap is positive, a rate when\n"
        "it is negative; `met` says which. With `[kpi.baseline]` in the config a baseline column\n"
        "shows where each KPI stood before (baseline → actual → target); `--by workflow` compares a\n"
        "pilot workflow with the rest. JSON/CSV rows: kpi, group, baseline, actual, target, gap,\n"
        "count, p90 (time KPIs), unit, met, node; the last row (kpi `bottleneck`) names the node with the\n"
        "largest share of breaches and time over SLA (`report sla` shows each node's lateness). A\n"
        "breach is a node visit that stopped after its deadline or still runs past it, whether or not\n"
        "a sweep ran."
    )
)
def kpi(
    ctx: typer.Context,
    start: str | None = typer.Option(None, "--from", metavar="DATE|TIME", help=FROM_HELP),
    end: str | None = typer.Option(None, "--to", metavar="DATE|TIME", help=TO_HELP),
    by: Dimension | None = typer.Option(None, "--by", help=_("Cut every KPI by this dimension."), case_sensitive=False),
    fmt: Format | None = format_option(),
) -> None:
    from ffctl.commands._output import Column, render, resolve_format
    from ffctl.core.kpi import kpi_report

    st = AppState.of(ctx)
    cfg, period = _refreshed(st, start, end, cuts=(by.value if by else None,))
    with st.store().session() as s:
        rows = kpi_report(s, cfg, now=st.now(), period=period, by=by.value if by else None)
    kind = resolve_format(fmt)
    if kind in ("json", "csv"):
        render(rows, [Column(k) for k in KPI_COLUMNS], kind, tz=st.tz)
        return
    _kpi_table(rows, by.value if by else None, period, st.tz)


class MissDimension(str, Enum):
    cause = "cause"
    node = "node"
    role = "role"
    sku = "sku"
    supplier = "supplier"
    region = "region"
    channel = "channel"


MISS_COLUMNS = ("group", "orders", "share", "cumulative_share", "role", "supplier")
MISSED_ORDER_COLUMNS = (
    "order_id",
    "created_at",
    "components",
    "cause",
    "node",
    "role",
    "sku",
    "supplier",
    "region",
    "channel",
)
#: on a narrow terminal, the order's own fields go first, then the cause's details (1: first left out)
MISSED_ORDER_DROPS = {"channel": 1, "created_at": 2, "region": 3, "supplier": 4, "role": 5, "sku": 6}


@app.command(
    help=_(
        "Why orders were not perfect: every order shipped in full with a failed component (late,\n"
        "short = a unit cancelled, wrong_item = a pick error, delivery_issue, returned) and its one\n"
        "primary cause, as a Pareto (orders, share, cumulative share). The cause is the first that\n"
        "applies, in the order an order lives them: stockout:SKU (late or short, and it waited at an\n"
        "allocation node past its SLA until a receipt of SKU came in; the supplier is that receipt's),\n"
        "hold:REASON (late, and held: the first hold's reason), node:NAME (late: the node with the most\n"
        "business time over its SLA, with its owner role), pick_error, delivery:ISSUE,\n"
        "returned:REASON (the reason with the most units), else unexplained:late or unexplained:short."
    )
)
def misses(
    ctx: typer.Context,
    start: str | None = typer.Option(None, "--from", metavar="DATE|TIME", help=FROM_HELP),
    end: str | None = typer.Option(None, "--to", metavar="DATE|TIME", help=TO_HELP),
    by: MissDimension = typer.Option(
        MissDimension.cause,
        "--by",
        case_sensitive=False,
        help=_(
            "Group the misses by their cause, or the cause's node, role, SKU or supplier, or the order's "
            "region or channel."
        ),
    ),
    orders: bool = typer.Option(False, "--orders", help=_("List the missed orders instead of the Pareto.")),
    group: str | None = typer.Option(
        None,
        "--group",
        metavar="VALUE",
        help=_(
            "With --orders: only the orders of this group (with --by cause, a family such as `node` takes "
            "every node:... cause)."
        ),
    ),
    fmt: Format | None = format_option(),
) -> None:
    from ffctl.commands._output import Column, render, resolve_format
    from ffctl.core.misses import missed_orders, pareto

    st = AppState.of(ctx)
    cfg, period = _refreshed(st, start, end)
    kind = resolve_format(fmt)
    with st.store().session() as s:
        if orders:
            rows = missed_orders(s, cfg, period=period, by=by.value, group=group)
            if kind != "json" and kind != "csv":
                rows = [dict(r, components=", ".join(r["components"])) for r in rows]
            columns = [
                Column(k, header=N_("order") if k == "order_id" else None, narrow_drop=MISSED_ORDER_DROPS.get(k, 0))
                for k in MISSED_ORDER_COLUMNS
            ]
            render(
                rows,
                columns,
                kind,
                tz=st.tz,
                title=_("Missed orders — {period}").format(period=_describe_period(period, st.tz)),
                empty=_("No missed orders."),
            )
            return
        rows = pareto(s, cfg, period=period, by=by.value)
    if kind in ("json", "csv"):
        render(rows, [Column(k) for k in MISS_COLUMNS], kind, tz=st.tz)
        return
    shown = [
        dict(
            r,
            share=f"{r['share'] * 100:.1f}%",
            cumulative_share=f"{r['cumulative_share'] * 100:.1f}%",
            group=r["group"] if r["group"] is not None else "-",
        )
        for r in rows
    ]
    columns = [
        Column("group", header=by.value),
        Column("orders", justify="right"),
        Column("share", justify="right"),
        Column("cumulative_share", header=N_("cumulative"), justify="right"),
    ]
    if by.value == "cause":
        columns += [Column("role", header=N_("owner role")), Column("supplier")]
    render(
        shown,
        columns,
        kind,
        tz=st.tz,
        title=_("Why orders were not perfect — {period}").format(period=_describe_period(period, st.tz)),
        empty=_("No missed orders: every shipped order in the period is perfect or not delivered yet."),
    )


@app.command(
    help=_(
        "SLA attainment per node, with time in node against the SLA, breaches and escalations.\n"
        "\n"
        "Per node: visits closed by a decision (completed, approved or rejected), those within the SLA,\n"
        "attainment, p50/p90 wall-clock time in the node, the SLA, breaches (visits that stopped after\n"
        "their deadline or still run past it, whether or not a sweep ran), their lateness (p50/p90\n"
        "business time past the deadline), escalations, reminders and automatic actions; `bottleneck`\n"
        "marks the node with the largest share of breaches and time over SLA. Durations in JSON/CSV\n"
        "are seconds."
    )
)
def sla(
    ctx: typer.Context,
    start: str | None = typer.Option(None, "--from", metavar="DATE|TIME", help=FROM_HELP),
    end: str | None = typer.Option(None, "--to", metavar="DATE|TIME", help=TO_HELP),
    fmt: Format | None = format_option(),
) -> None:
    from ffctl.commands._output import Column, render, resolve_format
    from ffctl.core.kpi import sla_report

    st = AppState.of(ctx)
    # current facts let it read visit_fact by (node, time); otherwise it reads the task history
    cfg, period = _refreshed(st, start, end, cuts=())
    with st.store().session() as s:
        rows = sla_report(s, cfg, now=st.now(), period=period)
    kind = resolve_format(fmt)
    if kind in ("json", "csv"):
        render(rows, [Column(k) for k in SLA_COLUMNS], kind, tz=st.tz)
        return
    _sla_table(rows, period, st.tz)


WORKLOAD_COLUMNS = (
    "group",
    "arrived",
    "completed",
    "business_days",
    "arrived_per_day",
    "completed_per_day",
    "handling_p50_seconds",
    "handling_p90_seconds",
    "open_now",
    "oldest_open_order",
    "oldest_open_node",
    "oldest_open_since",
    "oldest_open_seconds",
    "breached",
    "breach_share",
)


@app.command(
    help=_(
        "Is a role short of people? Arrivals against completions per business day, and the backlog.\n"
        "\n"
        "Per role (or person): node visits that arrived and were completed in the period, per business\n"
        "day (days on which the calendar of one of its nodes has working time); p50/p90 handling time\n"
        "(business time from arriving to the decision, holds left out); visits open now and the\n"
        "oldest of them; breaches (a visit that stopped after its deadline or still runs past it) as\n"
        "a share of the visits that arrived (per person: of the visits they closed; automatic\n"
        "actions show under the sweep's name, sla-sweep). --from/--to\n"
        "select visits by when they arrived or were completed, not orders by creation. Arrivals and\n"
        "open visits belong to roles: per person they are empty. JSON/CSV keys: group, arrived,\n"
        "completed, business_days, arrived_per_day, completed_per_day, handling_p50_seconds,\n"
        "handling_p90_seconds, open_now, oldest_open_order, oldest_open_node, oldest_open_since,\n"
        "oldest_open_seconds, breached, breach_share."
    )
)
def workload(
    ctx: typer.Context,
    start: str | None = typer.Option(
        None, "--from", metavar="DATE|TIME", help=_("Node visits from this date or time on (a date means its start).")
    ),
    end: str | None = typer.Option(
        None, "--to", metavar="DATE|TIME", help=_("Node visits up to this date (inclusive) or before this time.")
    ),
    by: WorkloadBy = typer.Option(
        WorkloadBy.role, "--by", help=_("One row per owner role, or per person."), case_sensitive=False
    ),
    fmt: Format | None = format_option(),
) -> None:
    from ffctl.commands._output import Column, message, render, resolve_format
    from ffctl.core.workload import workload_report

    st = AppState.of(ctx)
    cfg, period = _refreshed(st, start, end)  # the figures read work_fact when it is current
    with st.store().session() as s:
        rows = workload_report(s, cfg, now=st.now(), period=period, by=by.value)
    if not any(r["completed"] or r["arrived"] for r in rows):
        message(_("No node visits arrived or were completed: {period}.").format(period=_describe_visits(period, st.tz)))
    kind = resolve_format(fmt)
    if kind in ("json", "csv"):
        render(rows, [Column(k) for k in WORKLOAD_COLUMNS], kind, tz=st.tz)
        return
    if rows:
        _workload_table(rows, by.value, period, st.tz)


def _describe_visits(period, tz: str) -> str:
    return _describe_span(
        period,
        tz,
        _("visits from {start} to {end} ({tz})"),
        _("visits since {start} ({tz})"),
        _("visits before {end} ({tz})"),
        _("all visits"),
    )


def _workload_table(rows: list[dict], by: str, period, tz: str) -> None:
    from ffctl.commands._output import Column, get_console, render
    from ffctl.core.durations import approx_duration

    def dur(seconds):
        return "-" if seconds is None else approx_duration(seconds)

    def per_day(value):
        return "-" if value is None else f"{value:,.1f}"

    def share(row):
        return "-" if row["breach_share"] is None else f"{row['breach_share'] * 100:.1f}% ({row['breached']:,})"

    def oldest(row):
        if row["oldest_open_order"] is None:
            return "-"
        return _("{age} ({order} at {node})").format(
            age=dur(row["oldest_open_seconds"]), order=row["oldest_open_order"], node=row["oldest_open_node"]
        )

    for r in rows:  # table-only cells computed from several keys
        r["_group"] = r["group"] if r["group"] is not None else _("(auto nodes)") if by == "role" else "-"
        r["_share"], r["_oldest"] = share(r), oldest(r)
    columns = [Column("_group", by)]
    if by == "role":
        columns.append(Column("arrived_per_day", _("arrived/day"), "right", show=per_day))
    columns += [
        Column("completed_per_day", _("done/day"), "right", show=per_day),
        Column("completed", _("done"), "right", narrow_drop=3),
        Column("handling_p50_seconds", _("handling p50"), "right", show=dur),
        Column("handling_p90_seconds", _("p90"), "right", show=dur, narrow_drop=2),
    ]
    if by == "role":
        columns += [Column("open_now", _("open now"), "right"), Column("_oldest", _("oldest open"), narrow_drop=1)]
    columns.append(Column("_share", _("breached"), "right"))
    render(
        rows,
        columns,
        "table",
        tz=tz,
        title=_("Workload per {by} — {period}").format(by=by, period=_describe_visits(period, tz)),
    )
    get_console().print(
        "[dim]"
        + _(
            "per day: over the business days of the period (days the calendar of one of the group's nodes works); "
            "handling: business time from arriving to the decision, holds left out; breached: share of the visits "
            "that arrived (per person: that they closed), stopped after the deadline or still running past it."
        )
        + "[/dim]"
    )


@app.command(
    help=_(
        "The paths orders actually took: node to node counts, rework, and the commonest paths.\n"
        "\n"
        "edges: how often an order went from one node straight to the next (skipped nodes left out),\n"
        "with the median business time from entering the first to entering the second, in the first\n"
        "node's calendar; rework: per node, visits, rejects (visits that sent the order back) and\n"
        "revisits (visits beyond an order's first); variants: the distinct node sequences with their\n"
        "share of the orders, most common first. JSON: {orders, edges: [{from, to, count,\n"
        "median_business_seconds}], rework: [{node, visits, orders, rejects, revisits}], variants:\n"
        "[{path, orders, share}], variants_total, other_orders}. CSV: the edges."
    )
)
def flow(
    ctx: typer.Context,
    start: str | None = typer.Option(None, "--from", metavar="DATE|TIME", help=FROM_HELP),
    end: str | None = typer.Option(None, "--to", metavar="DATE|TIME", help=TO_HELP),
    top: int = typer.Option(10, "--top", min=1, metavar="N", help=_("How many paths (variants) to show.")),
    fmt: Format | None = format_option(),
) -> None:
    from ffctl.commands._output import Column, dumps, render, resolve_format
    from ffctl.core.flow import flow_report

    st = AppState.of(ctx)
    cfg, period = _refreshed(st, start, end, cuts=())
    with st.store().session() as s:
        report = flow_report(s, cfg, now=st.now(), period=period, top=top)
    kind = resolve_format(fmt)
    if kind == "json":
        print(dumps(report, st.tz))
    elif kind == "csv":
        render(report["edges"], [Column(k) for k in ("from", "to", "count", "median_business_seconds")], "csv")
    else:
        _flow_tables(report, period, st.tz)


def _say_if_read_only(st: AppState, refreshed: dict) -> None:
    """On a read-only store the figures are those of the last refresh where it took writes."""
    if refreshed.get("mode") == "read-only":
        from ffctl.commands._output import message
        from ffctl.core.clock import shown

        message(
            _("Note: the store is read-only; the figures are as of its last refresh ({at}).").format(
                at=shown(refreshed.get("refreshed_at"), st.tz)
            )
        )


@app.command(help=_("Write a self-contained HTML dashboard (inline SVG charts; opens offline, no scripts)."))
def dashboard(
    ctx: typer.Context,
    out: Path = typer.Option(
        ..., "--out", "-o", metavar="FILE.html", help=_("Where to write the HTML file ('-': stdout).")
    ),
    start: str | None = typer.Option(None, "--from", metavar="DATE|TIME", help=FROM_HELP),
    end: str | None = typer.Option(None, "--to", metavar="DATE|TIME", help=TO_HELP),
) -> None:
    from ffctl.commands._output import message
    from ffctl.core.dashboard import build_dashboard
    from ffctl.core.errors import FfctlError

    st = AppState.of(ctx)
    cfg, period = _refreshed(st, start, end, cuts=(None, "week", "region"))
    with st.store().session() as s:
        html = build_dashboard(s, cfg, now=st.now(), period=period)
    if str(out) == "-":
        typer.echo(html, nl=False)
        return
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise FfctlError(_("cannot write {out}: {value}").format(out=out, value=exc.strerror or exc)) from None
    message(
        _("Wrote {out} ({value} KB); open it in a browser, it needs no network.").format(
            out=out, value=len(html.encode("utf-8")) // 1024 + 1
        )
    )


# --- table views -----------------------------------------------------------------------------


def _describe_period(period, tz: str) -> str:
    return _describe_span(
        period,
        tz,
        _("orders created {start} to {end} ({tz})"),
        _("orders created since {start} ({tz})"),
        _("orders created before {end} ({tz})"),
        _("all orders"),
    )


def _describe_span(period, tz: str, between: str, since: str, before: str, everything: str) -> str:
    """A report's period in words, local to ``tz``, from the four (translated) ways to say it."""
    from ffctl.core.clock import local

    def show(dt):
        return local(dt, tz).strftime("%Y-%m-%d %H:%M")

    if period.start and period.end:
        return between.format(start=show(period.start), end=show(period.end), tz=tz)
    if period.start:
        return since.format(start=show(period.start), tz=tz)
    if period.end:
        return before.format(end=show(period.end), tz=tz)
    return everything


def value_text(value, unit: str, digits: int = 2) -> str:
    if value is None:
        return "-"
    if unit == "rate":
        return f"{value * 100:.{digits}f}%"
    return f"{value:,.1f} {'min' if unit == 'minutes' else 'h'}"


def gap_text(gap, unit: str, digits: int = 2) -> str:
    if gap is None:
        return "-"
    if unit == "rate":
        return f"{gap * 100:+.{digits}f} pp"
    return f"{gap:+,.1f} {'min' if unit == 'minutes' else 'h'}"


def bar(actual, target, unit: str, met, width: int = 20):
    """A bar of ``actual`` with a tick at ``target``: rates on 0..100%, times on 0..2x target."""
    from rich.text import Text

    text = Text()
    if actual is None or target is None:
        return text
    scale = 1.0 if unit == "rate" else 2.0 * target
    filled = max(0, min(width, round(actual / scale * width))) if scale else 0
    tick = max(0, min(width - 1, round(target / scale * width))) if scale else 0
    colour = "green" if met else "red"
    for i in range(width):
        if i == tick:
            text.append("┃", style="bold")
        elif i < filled:
            text.append("█", style=colour)
        else:
            text.append("░", style="grey50")
    return text


def _kpi_table(rows: list[dict], by: str | None, period, tz: str) -> None:
    from ffctl.commands._output import get_console, message, new_table, print_fitted, safe
    from ffctl.core.kpi import percent_decimals

    kpis = [r for r in rows if r["kpi"] != "bottleneck"]
    if not kpis:
        message(_("No orders: {describe_period}.").format(describe_period=_describe_period(period, tz)))
        return
    with_baseline = any(r.get("baseline") is not None for r in kpis)  # only when [kpi.baseline] is set

    def build(compact: bool):
        # compact (a narrow terminal): no bar, so the KPI names stay whole; red still marks a miss
        table = new_table(
            compact,
            title=_("Fulfillment KPIs — {describe_period}").format(describe_period=_describe_period(period, tz)),
        )
        table.add_column(_("KPI"), no_wrap=compact)
        if by:
            table.add_column(by)
        if with_baseline:
            table.add_column(_("baseline"), justify="right")
        for name in (_("actual"), _("p90"), _("target"), _("gap"), _("count")):
            table.add_column(name, justify="right")
        if not compact:
            table.add_column(_("vs target (┃)"))
        previous = None
        for r in kpis:
            first = r["kpi"] != previous
            if first and previous is not None and by:
                table.add_section()
            previous = r["kpi"]
            style = "red" if r["met"] is False else None
            cells = [safe(r["kpi"]) if first or not by else ""]
            if by:
                cells.append("-" if r["group"] is None else safe(r["group"]))  # a region may be "[/]"
            digits = percent_decimals(r["actual"], r["target"])
            if with_baseline:
                cells.append(value_text(r["baseline"], r["unit"], digits))
            cells += [
                value_text(r["actual"], r["unit"], digits),
                value_text(r["p90"], r["unit"]) if r["unit"] != "rate" else "",
                value_text(r["target"], r["unit"], digits),
                gap_text(r["gap"], r["unit"], digits),
                f"{r['count']:,}",
            ]
            if not compact:
                cells.append(bar(r["actual"], r["target"], r["unit"], r["met"]))
            table.add_row(*cells, style=style)
        return table

    print_fitted(build)
    console = get_console()
    console.print(_("[dim]gap = actual - target; red: the target is missed. Times are medians (p90 beside).[/dim]"))
    if with_baseline:
        console.print(
            "[dim]"
            + _("baseline: where the KPI stood before ([kpi.baseline] in the config); read baseline → actual → target.")
            + "[/dim]"
        )
    for r in kpis:
        if r["kpi"] == "return_rate" and r.get("top_reasons"):
            reasons = ", ".join(f"{safe(x['reason'])} {x['units']:,}" for x in r["top_reasons"])
            where = f" ({safe(r['group']) if r['group'] is not None else '-'})" if by else ""
            console.print(_("Top return reasons{where}: {reasons}").format(where=where, reasons=reasons))
    for b in (r for r in rows if r["kpi"] == "bottleneck"):
        if b["node"] is None:
            console.print(_("Bottleneck: none — no node breached its SLA."))
        else:
            console.print(
                _(
                    "[bold]Bottleneck: {node}[/bold] — {breaches}% of breaches ({count}), {over}% of time over "
                    "SLA; `ffctl report sla` shows how late each node's breaches were."
                ).format(
                    node=safe(b["node"]),
                    breaches=f"{b['breach_share'] * 100:.0f}",
                    count=f"{b['count']:,}",
                    over=f"{b['over_sla_share'] * 100:.0f}",
                )
            )


def _late(seconds) -> str:
    """A lateness for people: business time past the deadline, rounded."""
    from ffctl.core.durations import approx_duration

    return "-" if seconds is None else approx_duration(seconds)


def _sla_table(rows: list[dict], period, tz: str) -> None:
    from ffctl.commands._output import get_console, message, new_table, print_fitted, safe, say_not_shown
    from ffctl.core.durations import approx_duration, format_duration

    if not rows:
        message(_("No node visits: {describe_period}.").format(describe_period=_describe_period(period, tz)))
        return

    def dur(seconds):
        return "-" if seconds is None else approx_duration(seconds)

    columns = (
        (N_("node"), "left"),
        (N_("owner"), "left"),
        (N_("done"), "right"),
        (N_("in SLA"), "right"),
        (N_("attainment"), "right"),
        (N_("p50"), "right"),
        (N_("p90"), "right"),
        (N_("SLA"), "right"),
        (N_("breaches"), "right"),
        (N_("late p50"), "right"),
        (N_("late p90"), "right"),
        (N_("esc."), "right"),
        (N_("auto"), "right"),
    )
    # on a narrow terminal, the columns least needed to find the bottleneck go first
    layouts = ((), ("owner",), ("owner", "in SLA"), ("owner", "in SLA", "esc.", "auto"))

    def build(hidden: tuple[str, ...]):
        table = new_table(
            True, title=_("SLA per node — {describe_period}").format(describe_period=_describe_period(period, tz))
        )
        shown = [i for i, (name, _justify) in enumerate(columns) if name not in hidden]
        for i in shown:
            table.add_column(_(columns[i][0]), justify=columns[i][1], no_wrap=True)
        for r in rows:
            style = "red" if r["met"] is False else None
            node = f"{r['node']} *" if r["bottleneck"] else r["node"]
            cells = (
                safe(node),
                safe(r["owner"] or _("(auto)")),
                f"{r['completed']:,}",
                f"{r['within_sla']:,}",
                value_text(r["attainment"], "rate"),
                dur(r["p50_seconds"]),
                dur(r["p90_seconds"]),
                "-" if r["sla_seconds"] is None else format_duration(r["sla_seconds"]),
                f"{r['breaches']:,}",
                _late(r["late_p50_seconds"]),
                _late(r["late_p90_seconds"]),
                f"{r['escalations']:,}",
                f"{r['auto_actions']:,}",
            )
            table.add_row(*(cells[i] for i in shown), style=style)
        return table

    say_not_shown(print_fitted(build, layouts))
    console = get_console()
    worst = next((r["node"] for r in rows if r["bottleneck"]), None)
    if worst:
        console.print(
            _("[bold]* bottleneck: {safe}[/bold] (largest share of breaches and time over SLA)").format(
                safe=safe(worst)
            )
        )
    console.print(
        "[dim]"
        + _(
            "done: visits closed by a decision; p50/p90: wall-clock time in the node; 'in SLA' "
            "compares with the deadline, counted in the node's calendar; breaches: visits that "
            "stopped after their deadline or still run past it; late: business time past the "
            "deadline of the breached visits."
        )
        + "[/dim]"
    )


def _flow_tables(report: dict, period, tz: str) -> None:
    from ffctl.commands._output import get_console, message, new_table, safe
    from ffctl.core.durations import approx_duration

    if not report["orders"]:
        message(_("No node visits: {period}.").format(period=_describe_period(period, tz)))
        return
    console = get_console()
    edges = new_table(True, title=_("Node to node — {period}").format(period=_describe_period(period, tz)))
    for name, justify in (
        (N_("from"), "left"),
        (N_("to"), "left"),
        (N_("orders"), "right"),
        (N_("median time"), "right"),
    ):
        edges.add_column(_(name), justify=justify, no_wrap=True)
    for e in report["edges"]:
        median = e["median_business_seconds"]
        edges.add_row(
            safe(e["from"]), safe(e["to"]), f"{e['count']:,}", "-" if median is None else approx_duration(median)
        )
    console.print(edges)
    rework = new_table(True, title=_("Rework per node"))
    for name in (N_("node"), N_("visits"), N_("rejects"), N_("revisits")):
        rework.add_column(_(name), justify="left" if name == "node" else "right", no_wrap=True)
    for r in report["rework"]:
        rework.add_row(
            safe(r["node"]),
            f"{r['visits']:,}",
            f"{r['rejects']:,}",
            f"{r['revisits']:,}",
            style="red" if r["rejects"] else None,
        )
    console.print(rework)
    variants = new_table(
        True,
        title=_("Paths (variants) — {shown} of {total}").format(
            shown=len(report["variants"]), total=f"{report['variants_total']:,}"
        ),
    )
    for name, justify in ((N_("share"), "right"), (N_("orders"), "right"), (N_("path"), "left")):
        variants.add_column(_(name), justify=justify)
    for v in report["variants"]:
        variants.add_row(f"{v['share'] * 100:.1f}%", f"{v['orders']:,}", safe(" → ".join(v["path"])))
    console.print(variants)
    if report["other_orders"]:
        others = report["variants_total"] - len(report["variants"])
        console.print(
            "[dim]"
            + ngettext("{orders} more order", "{orders} more orders", report["other_orders"]).format(
                orders=f"{report['other_orders']:,}"
            )
            + " "
            + ngettext(
                "took {paths} other path (--top shows more).", "took {paths} other paths (--top shows more).", others
            ).format(paths=f"{others:,}")
            + "[/dim]"
        )
    console.print(
        "[dim]"
        + _(
            "median time: business time from entering the first node to entering the next, in "
            "the first node's calendar; rejects send an order back; revisits: visits beyond an "
            "order's first to the node."
        )
        + "[/dim]"
    )
