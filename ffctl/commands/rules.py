"""ffctl rules run / list: the rule engine alone (every `sla sweep` runs it too)."""

from __future__ import annotations

import typer

from ffctl.commands._common import AppState, format_option, parse_user_time
from ffctl.i18n import N_, _, ngettext

app = typer.Typer(help=_("Run or list the rules: low stock, dwelling orders, suppliers."), no_args_is_help=True)

ITEM_COLUMNS = ("rule", "kind", "subject", "what", "detail")


@app.command(
    help=_(
        "Evaluate every rule once: draft requisitions, flag dwelling orders, freeze weak suppliers.\n"
        "\n"
        "Each hit happens once: a SKU gets one draft requisition, an order one standing flag, a supplier\n"
        "one freeze, however often (or however many at once) the rules run."
    )
)
def run(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help=_("Show what the rules would do; change nothing.")),
    now: str | None = typer.Option(
        None, "--now", metavar="ISO", help=_("Evaluate at this time (same as the global --now).")
    ),
    fmt=format_option(),
) -> None:
    from ffctl.commands._output import Column, dumps, get_console, message, render, resolve_format, safe, table_cell
    from ffctl.core.rules import run_rules

    st = AppState.of(ctx)
    cfg = st.config()
    at = parse_user_time(now, st, "--now") or st.now()
    with st.store().session(write=not dry_run) as s:
        result = run_rules(s, cfg, now=at, actor=st.user, dry_run=dry_run)
    kind = resolve_format(fmt)
    columns = [Column(k) for k in ITEM_COLUMNS]
    if kind == "json":
        print(dumps({"now": at, **result}, st.tz))
        return
    if kind == "csv":
        render(result["items"], columns, "csv", tz=st.tz)
        return
    from rich.table import Table

    summary = Table(header_style="bold", title=_("rules") + (_(" (dry run)") if dry_run else ""))
    summary.add_column(_("rule"))
    summary.add_column(_("kind"))
    summary.add_column(_("hits"), justify="right")
    kinds = {r.name: r.kind for r in cfg.rules}
    for name, hits in result["per_rule"].items():
        summary.add_row(safe(name), safe(kinds.get(name, "")), str(hits))
    get_console().print(summary)
    if result["items"]:
        render(result["items"], [Column(k) for k in ITEM_COLUMNS], "table", tz=st.tz)

    verb = _("would queue") if dry_run else _("queued")
    hits = ngettext("{n} hit", "{n} hits", result["hits"]).format(n=result["hits"])
    notes = ngettext("{n} notification", "{n} notifications", result["notifications"]).format(n=result["notifications"])
    message(
        _("Rules at {table_cell} ({tz}): {hits}; {verb} {notes}").format(
            table_cell=table_cell(at, st.tz), tz=st.tz, hits=hits, verb=verb, notes=notes
        )
        + (_(" — dry run, nothing changed.") if dry_run else ".")
    )


@app.command("list", help=_("Each rule in the config: its condition and action, when it last ran and what it hit."))
def list_(ctx: typer.Context, fmt=format_option()) -> None:
    from ffctl.commands._output import Column, render
    from ffctl.core.rules import list_rules

    st = AppState.of(ctx)
    cfg = st.config()
    with st.store().session() as s:
        rows = list_rules(s, cfg)
    columns = [
        Column("rule"),
        Column("kind"),
        Column("description"),
        Column("notify"),
        Column("priority"),
        Column("last_run_at", N_("last run")),
        Column("last_hits", N_("last hits"), justify="right"),
        Column("total_hits", N_("total hits"), justify="right"),
    ]
    render(rows, columns, fmt, tz=st.tz, empty=_("No rules in the config ([rules.NAME] sections)."))
