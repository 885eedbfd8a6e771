"""ffctl demo: a realistic demo store, run end to end through the real code paths."""

from __future__ import annotations

import tempfile
from enum import Enum
from pathlib import Path

import typer

from ffctl.commands._common import AppState, end_startup
from ffctl.i18n import _, ngettext

app = typer.Typer()


class Language(str, Enum):
    zh_CN = "zh-CN"
    en = "en"


@app.command(help=_("Build a demo store (config, CSVs, SQLite) and simulate days of business, then report."))
def demo(
    ctx: typer.Context,
    directory: Path | None = typer.Option(
        None, "--dir", help=_("Folder for the demo store [default: a new temp dir].")
    ),
    orders: int = typer.Option(2000, "--orders", min=10, help=_("How many orders to simulate.")),
    days: int = typer.Option(30, "--days", min=1, max=365, help=_("How many days of business to simulate.")),
    seed: int = typer.Option(7, "--seed", help=_("Random seed (the same seed gives the same demo).")),
    language: Language | None = typer.Option(
        None,
        "--language",
        help=_(
            "Run the demo in this language and write it into the demo's config [default: as configured, else LANG]."
        ),
    ),
) -> None:
    import time

    from ffctl import i18n
    from ffctl.cli import app as root
    from ffctl.commands._output import message
    from ffctl.core.demo import build_demo

    end_startup()  # the demo opens its stores itself
    if language is not None:
        i18n.use(language.value)
    st = AppState.of(ctx)
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="ffctl-demo-"))  # 0700, new: build_demo wants a new or empty folder
    message(
        ngettext(
            "Building a demo store in {dir} ({orders} orders over {days} day) ...",
            "Building a demo store in {dir} ({orders} orders over {days} days) ...",
            days,
        ).format(dir=directory, orders=orders, days=days)
    )
    started = time.perf_counter()
    now = st.now() if st.now_text else None
    result = build_demo(
        directory,
        orders=orders,
        days=days,
        seed=seed,
        now=now,
        progress=message,
        language=language.value if language is not None else None,
    )
    c = result.counts
    message(
        _(
            "Done in {seconds} s: {orders} orders imported, {advances} node completions, {shipped} shipped "
            "({split} of them first in part), "
            "{delivered} delivered, {breaches} SLA breaches (node visits done after their deadline or still open "
            "past it), {escalations} escalations, {hits} rule hits."
        ).format(
            seconds=f"{time.perf_counter() - started:.0f}",
            orders=c.get("imported_orders", 0),
            advances=c.get("advances", 0),
            shipped=c.get("shipped", 0),
            split=c.get("split", 0),
            delivered=c.get("delivered", 0),
            breaches=c.get("breaches", 0),
            escalations=c.get("escalations", 0),
            hits=c.get("rule_hits", 0),
        )
    )
    base = ["--config", str(result.config_path), "--now", result.now.isoformat()]
    for title, args in ((_("KPI report"), ["report", "kpi"]), (_("SLA status"), ["sla", "status"])):
        message(f"\n== {title} ==")
        try:
            root([*base, *args, "--format", "table"], standalone_mode=False)
        except SystemExit:
            pass
    _top_misses(result)
    from ffctl.commands._output import cells, pad
    from ffctl.core.text import command

    cfg = ("--config", result.config_path)  # a folder name with a space or a quote still pastes right
    tries = [
        (command(*cfg, "--as", "judy", "task", "list", "--all", "--breached"), _("every late task (judy is an admin)")),
        (command(*cfg, "--as", "alice", "task", "list"), _("alice’s inbox, most urgent first")),
        (command(*cfg, "order", "list", "--flag", "shipping_exception"), ""),
        (command(*cfg, "report", "kpi", "--by", "region"), _("cut the KPIs")),
        (command(*cfg, "report", "kpi", "--by", "workflow"), _("the pilot workflow against the rest")),
        (command(*cfg, "report", "workload"), _("is a role short of people?")),
        (command(*cfg, "supplier", "list"), _("who lost inspection exemption, and why")),
        (command(*cfg, "report", "dashboard", "--out", result.directory / "dashboard.html"), ""),
    ]
    width = max(cells(line) for line, note in tries if note)  # a folder name may be Chinese
    message(
        "\n"
        + _("Try next:")
        + "\n"
        + "".join(f"  {pad(line, width)}   # {note}\n" if note else f"  {line}\n" for line, note in tries)
    )


def _top_misses(result) -> None:
    """The three causes behind most misses (``report misses``), after the KPI table."""
    from ffctl.commands._output import message
    from ffctl.core.config import load_config
    from ffctl.core.kpi import Period
    from ffctl.core.misses import pareto
    from ffctl.core.store import Store

    cfg = load_config(result.config_path)
    store = Store(cfg.database_url)
    try:
        with store.session() as s:
            rows = pareto(s, cfg, period=Period())[:3]
    finally:
        store.dispose()
    if not rows:
        return
    message("\n== " + _("Why orders were not perfect (top three causes)") + " ==")
    for r in rows:
        message(
            _("  {cause}: {orders} orders ({share}% of misses)").format(
                cause=r["group"], orders=r["orders"], share=f"{r['share'] * 100:.0f}"
            )
        )
