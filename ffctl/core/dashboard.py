"""``report dashboard``: one self-contained HTML file with the KPIs and their charts.

The numbers come from ``core.kpi`` (aggregated in SQL); this module only lays them out. Charts
are inline SVG written here: no script, no stylesheet or font loaded from anywhere, so the
file opens offline and can be mailed. ``render_dashboard`` is pure (data in, HTML out).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from html import escape
from typing import TYPE_CHECKING, Any

from ffctl.core.clock import local
from ffctl.core.durations import approx_duration, format_duration
from ffctl.core.flow import flow_report
from ffctl.core.forecast import likely
from ffctl.core.kpi import ALL, KPIS, Period, PeriodReports, nice_step, percent_decimals
from ffctl.core.misses import pareto
from ffctl.core.workload import workload_report
from ffctl.i18n import _, current, ngettext

if TYPE_CHECKING:
    from ffctl.core.config import Config

GREEN, RED, GREY, BLUE, PURPLE, AMBER = "#1f9d61", "#d64545", "#9aa3b2", "#2f6fdf", "#8e5bd6", "#e08a1e"
TEAL = "#1693a5"  # work arriving (the workload panel), apart from every other series
INK, MUTED, GRID = "#1d2433", "#5c667a", "#e6e9f0"
FONT = (
    '-apple-system, "Segoe UI", "Noto Sans CJK SC", "Noto Sans SC", "PingFang SC", "Hiragino Sans GB", '
    '"Microsoft YaHei", "Source Han Sans SC", "WenQuanYi Micro Hei", Roboto, "Helvetica Neue", Arial, sans-serif'
)


def kpi_labels() -> dict[str, tuple[str, str]]:
    """Each KPI's card name and definition, in the current language."""
    return {
        "order_confirmation_minutes": (_("Order confirmation"), _("created → first node done, median")),
        "allocation_minutes": (_("Allocation"), _("first node → stock allocated, median")),
        "pick_accuracy": (_("Pick accuracy"), _("picked lines with the right SKU, no more than ordered")),
        "on_time_shipping": (_("On-time shipping"), _("every unit shipped by the promised date")),
        "fill_rate": (_("Fill rate"), _("units shipped by the promised date / units ordered")),
        "perfect_order": (_("Perfect orders"), _("on time, in full, no delivery issue")),
        "cycle_time_hours": (_("Fulfillment cycle"), _("created → shipped, median")),
        "sla_attainment": (_("SLA attainment"), _("node visits done within their SLA")),
        "return_rate": (_("Return rate"), _("units returned / units shipped")),
    }


def build_dashboard(session, cfg: Config, *, now: datetime, period: Period = Period()) -> str:
    """Query every series the dashboard shows, each once and no more of it than it shows, and render it."""
    reports = PeriodReports(session, cfg, now=now, period=period)
    data = {
        "kpis": reports.kpis(),
        # the weekly trend draws these two; the returns panel, the return rate per region
        "weekly": reports.kpis(by="week", kpis=("on_time_shipping", "perfect_order")),
        "nodes": reports.sla(),
        "histogram": reports.histogram(at_least=cfg.kpi_targets.get("cycle_time_hours")),
        "owners": reports.owners(),
        "likely": likely(session, cfg, now),
        "workload": workload_report(session, cfg, now=now, period=period, by="role", handling=False),
        "flow": flow_report(session, cfg, now=now, period=period, top=5),
        "misses": pareto(session, cfg, period=period),
        "returns": reports.kpis(by="region", kpis=("return_rate",)),
    }
    return render_dashboard(data, tz=cfg.timezone, now=now, period=period)


def _likely_panel(rows: list[dict], tz: str) -> str:
    """Open tasks at least 50% likely to breach (core/forecast.py), most likely first."""
    if not rows:
        body = f'<div class="sub">{escape(_("no open task is at least 50% likely to breach"))}</div>'
    else:
        lines = "".join(
            f'<tr><td>{escape(r["order_id"])}</td><td>{escape(r["node"])}</td><td class="att">{r["p_breach"]:.0%}</td>'
            f"<td>{escape(local(r['deadline'], tz).strftime('%m-%d %H:%M'))}</td><td>{escape(r['reason'])}</td></tr>"
            for r in rows
        )
        body = f"<table><thead>{_header_row(_('order'), _('node'), _('p(breach)'), _('due'), _('why'))}</thead><tbody>{lines}</tbody></table>"
    return (
        f'<section class="panel"><h2>{escape(_("Likely to breach"))}</h2><div class="sub">'
        f"{escape(_('open tasks not yet late, by the chance they will be (their node’s history and queue; ffctl sla forecast)'))}"
        f"</div>{body}</section>"
    )


def _header_row(*names: str) -> str:
    return "<tr>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"


# --- formatting --------------------------------------------------------------------------------


def _value(value: float | None, unit: str, digits: int = 2) -> str:
    if value is None:
        return "–"
    if unit == "rate":
        return f"{value * 100:.{digits}f}%"
    if unit == "minutes":
        return _("{value} min").format(value=f"{value:,.1f}")
    if unit == "hours":
        return _("{value} h").format(value=f"{value:,.1f}")
    return f"{value:,.2f}"


def _gap(gap: float | None, unit: str, digits: int = 2) -> str:
    if gap is None:
        return ""
    if unit == "rate":
        return f"{gap * 100:+.{digits}f} pp"
    return (_("{value} min") if unit == "minutes" else _("{value} h")).format(value=f"{gap:+,.1f}")


def _state_colour(met: bool | None) -> str:
    return GREY if met is None else GREEN if met else RED


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _text(
    x: float,
    y: float,
    content: str,
    *,
    size: int = 12,
    fill: str = MUTED,
    anchor: str = "start",
    weight: str = "normal",
) -> str:
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" font-size="{size}" fill="{fill}" text-anchor="{anchor}" '
        f'font-weight="{weight}">{escape(content)}</text>'
    )


# --- SVG charts --------------------------------------------------------------------------------


def gauge(actual: float | None, target: float | None, unit: str, met: bool | None, width: int = 260) -> str:
    """A card's bar: rates on 0-100%, times on 0-2x target; a dark tick at the target."""
    h = 10
    parts = [
        f'<svg viewBox="0 0 {width} 22" width="100%" height="22" role="img">',
        f'<rect x="0" y="6" width="{width}" height="{h}" rx="5" fill="{GRID}"/>',
    ]
    if actual is not None and target:
        scale = 1.0 if unit == "rate" else 2.0 * target
        fill = max(0.0, min(1.0, actual / scale)) * width
        tick = max(0.0, min(1.0, target / scale)) * width
        parts.append(f'<rect x="0" y="6" width="{_num(fill)}" height="{h}" rx="5" fill="{_state_colour(met)}"/>')
        parts.append(f'<rect x="{_num(min(tick, width - 2))}" y="1" width="2.5" height="20" fill="{INK}"/>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(labels: Sequence[str], series: Sequence[dict], *, width: int = 1160, height: int = 260) -> str:
    """Weekly rates: one line per series ``{name, values, colour, target}``, 0-100%, dashed targets."""
    left, right, top, bottom = 52, 170, 16, 34
    pw, ph = width - left - right, height - top - bottom
    n = len(labels)
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{escape(_("weekly trends"))}">']
    values = [v for s in series for v in s["values"] if v is not None]
    targets = [s["target"] for s in series if s.get("target") is not None]
    floor = min(values + targets) if values else 0.0
    # the smallest round tick that shows everything from just under the lowest point to 100% in <= 6 steps
    tick = next((t for t in (0.01, 0.02, 0.05, 0.1, 0.2) if (1.0 - floor) + t / 2 <= 6 * t), 0.2)
    low = max(0.0, math.floor((floor - tick / 2) / tick + 1e-9) * tick) if values else 0.0
    span = 1.0 - low or 1.0
    steps = max(1, round(span / tick))

    def y(v: float) -> float:
        return top + ph * (1 - (v - low) / span)

    def x(i: int) -> float:
        return left + (pw * (i + 0.5) / n if n else 0)

    for k in range(steps + 1):
        v = min(1.0, low + tick * k)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{_num(y(v))}" y2="{_num(y(v))}" stroke="{GRID}"/>')
        parts.append(
            _text(
                left - 8,
                y(v) + 4,
                f"{v * 100:.0f}%" if tick >= 0.01 - 1e-9 else f"{v * 100:.1f}%",
                size=11,
                anchor="end",
            )
        )
    if not n:
        parts.append(_text(left + pw / 2, top + ph / 2, _("no orders in the period"), size=14, anchor="middle"))
    every = max(1, -(-n // 14))
    for i, label in enumerate(labels):
        if i % every == 0 or i == n - 1:
            parts.append(_text(x(i), height - 12, label, size=11, anchor="middle"))
    for s_i, s in enumerate(series):
        colour = s["colour"]
        if s.get("target") is not None:
            ty = y(s["target"])
            parts.append(
                f'<line x1="{left}" x2="{left + pw}" y1="{_num(ty)}" y2="{_num(ty)}" stroke="{colour}" '
                'stroke-dasharray="6 5" stroke-width="1.5" opacity="0.7"/>'
            )
        run: list[str] = []
        for i, v in enumerate(s["values"]):
            if v is None:
                if len(run) > 1:
                    parts.append(
                        f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="2.5"/>'
                    )
                run = []
                continue
            run.append(f"{_num(x(i))},{_num(y(v))}")
        if len(run) > 1:
            parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="2.5"/>')
        for i, v in enumerate(s["values"]):
            if v is not None:
                missed = s.get("target") is not None and v < s["target"]
                parts.append(
                    f'<circle cx="{_num(x(i))}" cy="{_num(y(v))}" r="4" fill="{"#fff" if missed else colour}" '
                    f'stroke="{colour}" stroke-width="2"><title>{escape(labels[i])}: {v * 100:.1f}%</title></circle>'
                )
        ly = top + 10 + s_i * 44
        parts.append(f'<rect x="{left + pw + 18}" y="{ly - 8}" width="14" height="4" fill="{colour}"/>')
        parts.append(_text(left + pw + 38, ly - 2, s["name"], size=12, fill=INK, weight="600"))
        if s.get("target") is not None:
            parts.append(
                _text(
                    left + pw + 38,
                    ly + 14,
                    _("target {target} (dashed)").format(target=f"{s['target'] * 100:.1f}%"),
                    size=11,
                )
            )
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(
    rows: Sequence[dict],
    *,
    max_value: float,
    width: int = 560,
    target: float | None = None,
    label_width: int = 130,
    value_width: int = 150,
    unit: str = "",
) -> str:
    """Horizontal bars ``{label, value, colour, text}``; an optional target line (same scale)."""
    row_h, top = 30, 8
    height = top * 2 + max(1, len(rows)) * row_h + (18 if target is not None else 0)
    pw = width - label_width - value_width
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img">']
    if not rows:
        parts.append(_text(width / 2, height / 2 + 4, _("nothing to show"), size=13, anchor="middle"))
    for i, r in enumerate(rows):
        y0 = top + i * row_h
        parts.append(_text(label_width - 10, y0 + 19, r["label"], size=12, fill=INK, anchor="end"))
        parts.append(f'<rect x="{label_width}" y="{y0 + 6}" width="{pw}" height="18" rx="4" fill="#f1f3f7"/>')
        value = r["value"] or 0
        w = pw * max(0.0, min(1.0, value / max_value)) if max_value else 0
        if w > 0:
            parts.append(
                f'<rect x="{label_width}" y="{y0 + 6}" width="{_num(w)}" height="18" rx="4" fill="{r["colour"]}">'
                f"<title>{escape(r['label'])}: {escape(r['text'])}</title></rect>"
            )
        parts.append(_text(label_width + pw + 10, y0 + 19, r["text"], size=12, fill=INK))
    if target is not None and max_value:
        tx = label_width + pw * min(1.0, target / max_value)
        bottom = top + max(1, len(rows)) * row_h
        parts.append(
            f'<line x1="{_num(tx)}" x2="{_num(tx)}" y1="{top}" y2="{bottom}" stroke="{INK}" '
            'stroke-width="2" stroke-dasharray="4 3"/>'
        )
        parts.append(_text(tx, bottom + 14, _("target {target}").format(target=unit), size=11, anchor="middle"))
    parts.append("</svg>")
    return "".join(parts)


def workload_chart(rows: Sequence[dict], *, width: int = 1160, label_width: int = 170, value_width: int = 330) -> str:
    """Per role, arrivals (teal) over completions per business day (green, red when fewer than the
    arrivals: the queue grows), on one scale; the backlog beside."""
    bar_h, row_h, top = 14, 44, 8
    height = top * 2 + max(1, len(rows)) * row_h
    pw = width - label_width - value_width
    most = max([r["arrived_per_day"] or 0 for r in rows] + [r["completed_per_day"] or 0 for r in rows] + [0])
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{escape(_("workload per role"))}">'
    ]
    if not rows:
        parts.append(_text(width / 2, height / 2 + 4, _("no node visits in the period"), size=13, anchor="middle"))
    for i, r in enumerate(rows):
        y0 = top + i * row_h
        role = r["group"] or _("(auto nodes)")
        parts.append(_text(label_width - 10, y0 + 26, role, size=12, fill=INK, anchor="end"))
        arrived, done = r["arrived_per_day"] or 0.0, r["completed_per_day"] or 0.0
        falling_behind = done < arrived
        for k, (value, colour, what) in enumerate(
            ((arrived, TEAL, _("arrived")), (done, RED if falling_behind else GREEN, _("done")))
        ):
            y = y0 + 4 + k * (bar_h + 2)
            parts.append(f'<rect x="{label_width}" y="{y}" width="{pw}" height="{bar_h}" rx="3" fill="#f1f3f7"/>')
            w = pw * value / most if most else 0
            if w > 0:
                parts.append(
                    f'<rect x="{label_width}" y="{y}" width="{_num(w)}" height="{bar_h}" rx="3" fill="{colour}">'
                    f"<title>{escape(role)}: {escape(what)} {value:,.1f} / day</title></rect>"
                )
        words = _("{arrived} in · {done} done per day").format(arrived=f"{arrived:,.1f}", done=f"{done:,.1f}")
        parts.append(
            _text(
                label_width + pw + 10,
                y0 + 17,
                words,
                size=12,
                fill=RED if falling_behind else INK,
                weight="600" if falling_behind else "normal",
            )
        )
        backlog = _("open {n}").format(n=f"{r['open_now'] or 0:,}")
        if r.get("oldest_open_seconds") is not None:
            backlog += " · " + _("oldest {age}").format(age=approx_duration(r["oldest_open_seconds"]))
        if r.get("breach_share") is not None:
            backlog += " · " + _("{share} breached").format(share=f"{r['breach_share'] * 100:.0f}%")
        parts.append(_text(label_width + pw + 10, y0 + 33, backlog, size=11))
    parts.append("</svg>")
    return "".join(parts)


def histogram(hist: dict, *, width: int = 560, height: int = 250, marks: Sequence[tuple[str, float, str]] = ()) -> str:
    """Shipped orders per cycle-time bucket (hours); ``marks`` are vertical lines (label, hours, colour)."""
    buckets = hist.get("buckets") or []
    left, right, top, bottom = 48, 14, 16, 40
    pw, ph = width - left - right, height - top - bottom
    parts = [
        f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{escape(_("cycle time distribution"))}">'
    ]
    if not buckets:
        parts.append(_text(width / 2, height / 2, _("no shipped orders in the period"), size=13, anchor="middle"))
        parts.append("</svg>")
        return "".join(parts)
    most = max(b["count"] for b in buckets) or 1
    tick = max(1, int(nice_step(most, 4)))
    top_count = -(-most // tick) * tick
    ticks = top_count // tick
    n = len(buckets)
    bw = pw / n
    for k in range(ticks + 1):
        v = tick * k
        yy = top + ph * (1 - k / ticks)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{_num(yy)}" y2="{_num(yy)}" stroke="{GRID}"/>')
        parts.append(_text(left - 6, yy + 4, f"{v:,.0f}", size=11, anchor="end"))
    step = hist["step"]
    for i, b in enumerate(buckets):
        h = ph * b["count"] / top_count
        count = escape(ngettext("{n} order", "{n} orders", b["count"]).format(n=f"{b['count']:,}"))
        colour = AMBER if b["end"] is None else BLUE
        span = f"≥ {_num(b['start'])} h" if b["end"] is None else f"{_num(b['start'])}–{_num(b['end'])} h"
        parts.append(
            f'<rect x="{_num(left + i * bw + 1)}" y="{_num(top + ph - h)}" width="{_num(max(bw - 2, 1))}" '
            f'height="{_num(h)}" fill="{colour}" rx="2"><title>{span}: {count}</title></rect>'
        )
    every = max(1, -(-n // 10))
    for i in range(0, n + 1, every):
        label = f"{_num(i * step)}" + ("+" if i == n - 1 and buckets[-1]["end"] is None else "")
        if i <= n - 1 or buckets[-1]["end"] is not None:
            parts.append(_text(left + i * bw, top + ph + 16, label, size=11, anchor="middle"))
    parts.append(_text(left + pw / 2, height - 6, _("hours from created to shipped"), size=11, anchor="middle"))
    limit = (n - 1) * step if buckets[-1]["end"] is None else n * step
    for i, (label, hours, colour) in enumerate(marks):
        if hours is None or not limit:
            continue
        mx = left + pw * min(1.0, hours / (n * step))
        parts.append(
            f'<line x1="{_num(mx)}" x2="{_num(mx)}" y1="{top}" y2="{top + ph}" stroke="{colour}" '
            'stroke-width="2" stroke-dasharray="5 4"/>'
        )
        words = f"{label} " + _("{value} h").format(value=_num(hours))
        box = len(words) * 6.5 + 6
        near_end = mx + box > left + pw
        parts.append(
            f'<rect x="{_num(mx - box - 2 if near_end else mx + 2)}" y="{top + 2 + i * 16}" '
            f'width="{_num(box)}" height="14" fill="#fff" opacity="0.85"/>'
        )
        parts.append(
            _text(
                mx - 5 if near_end else mx + 5,
                top + 13 + i * 16,
                words,
                size=11,
                fill=colour,
                weight="600",
                anchor="end" if near_end else "start",
            )
        )
    parts.append("</svg>")
    return "".join(parts)


def flow_diagram(flow: dict, *, width: int = 1160, height: int = 230) -> str:
    """The paths orders took: the nodes in a row (config order), an arrow per directly-follows
    pair, as thick as it is common; forward jumps arc above, rework (back) arcs below in red."""
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="{escape(_("order flow"))}">']
    names = [r["node"] for r in flow.get("rework", [])]
    if not names:
        parts.append(_text(width / 2, height / 2, _("no node visits in the period"), size=13, anchor="middle"))
        parts.append("</svg>")
        return "".join(parts)
    box_w, box_h, mid = 130, 44, height / 2
    gap = (width - 40 - box_w * len(names)) / max(1, len(names) - 1) if len(names) > 1 else 0
    x = {n: 20 + i * (box_w + gap) for i, n in enumerate(names)}
    index = {n: i for i, n in enumerate(names)}
    top = max([e["count"] for e in flow["edges"]] + [1])
    for e in flow["edges"]:
        a, b = e["from"], e["to"]
        if a not in x or b not in x:
            continue
        stroke = _num(1.5 + 7 * e["count"] / top)
        back = index[b] < index[a]
        colour = RED if back else BLUE
        median = "" if e["median_business_seconds"] is None else f" · {approx_duration(e['median_business_seconds'])}"
        label = f"{e['count']:,}{median}"
        orders = ngettext("{n} order", "{n} orders", e["count"]).format(n=f"{e['count']:,}")
        title = f"<title>{escape(a)} → {escape(b)}: {orders}{escape(median)}</title>"
        if index[b] == index[a] + 1:  # the next node: a straight arrow between the boxes
            x1, x2 = x[a] + box_w, x[b]
            parts.append(
                f'<line x1="{_num(x1)}" y1="{_num(mid)}" x2="{_num(x2 - 8)}" y2="{_num(mid)}" stroke="{colour}" '
                f'stroke-width="{stroke}">{title}</line>'
            )
            parts.append(_arrowhead(x2, mid, 1.0, 0.0))
            parts.append(_text((x1 + x2) / 2, mid - 10, label, size=10, fill=INK, anchor="middle"))
            continue
        span = abs(index[b] - index[a])
        x1, x2 = x[a] + box_w / 2, x[b] + box_w / 2
        y0 = mid + (box_h / 2 if back else -box_h / 2)
        lift = min(mid - box_h / 2 - 14, 26 + 14 * span)
        cy = y0 + lift if back else y0 - lift
        parts.append(
            f'<path d="M{_num(x1)},{_num(y0)} Q{_num((x1 + x2) / 2)},{_num(cy + (lift if back else -lift))} '
            f'{_num(x2)},{_num(y0)}" fill="none" stroke="{colour}" stroke-width="{stroke}" opacity="0.8">'
            f"{title}</path>"
        )
        # the curve ends heading from its control point to its end
        parts.append(_arrowhead(x2, y0, x2 - (x1 + x2) / 2, y0 - (cy + (lift if back else -lift))))
        parts.append(
            _text((x1 + x2) / 2, cy + (16 if back else -9), label, size=11, fill=RED if back else INK, anchor="middle")
        )
    for r in flow["rework"]:
        n = r["node"]
        visits = _("{visits} visits, {rejects} rejects, {revisits} revisits").format(
            visits=f"{r['visits']:,}", rejects=f"{r['rejects']:,}", revisits=f"{r['revisits']:,}"
        )
        edge = RED if r["rejects"] else GRID
        parts.append(
            f'<rect x="{_num(x[n])}" y="{_num(mid - box_h / 2)}" width="{box_w}" height="{box_h}" rx="8" '
            f'fill="#f7f9fc" stroke="{edge}" stroke-width="1.5"><title>{escape(n)}: {escape(visits)}</title></rect>'
        )
        parts.append(_text(x[n] + box_w / 2, mid - 3, n, size=12, fill=INK, anchor="middle", weight="600"))
        words = _("{visits} visits").format(visits=f"{r['visits']:,}")
        if r["rejects"]:
            words += " · " + _("{rejects} rejects").format(rejects=f"{r['rejects']:,}")
        parts.append(_text(x[n] + box_w / 2, mid + 13, words, size=10, anchor="middle"))
    parts.append("</svg>")
    return "".join(parts)


def _arrowhead(x: float, y: float, dx: float, dy: float, size: float = 9.0) -> str:
    """A small triangle with its tip at (x, y), pointing along (dx, dy)."""
    length = math.hypot(dx, dy) or 1.0
    ux, uy = dx / length, dy / length
    bx, by = x - ux * size, y - uy * size
    points = [(x, y), (bx - uy * size / 2, by + ux * size / 2), (bx + uy * size / 2, by - ux * size / 2)]
    return f'<polygon points="{" ".join(f"{_num(px)},{_num(py)}" for px, py in points)}" fill="{MUTED}"/>'


def _variants_text(flow: dict) -> str:
    rows = "".join(
        f"<tr><td>{v['share'] * 100:.1f}%</td><td>{v['orders']:,}</td><td>{escape(' → '.join(v['path']))}</td></tr>"
        for v in flow.get("variants", [])
    )
    return (
        f'<table class="paths"><thead>{_header_row(_("share"), _("orders"), _("path"))}</thead>'
        f"<tbody>{rows}</tbody></table>"
    )


# --- the page ----------------------------------------------------------------------------------

# CSS is full of braces: %-placeholders need none escaped
_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f5f9;color:%(ink)s;font-family:%(font)s;font-size:14px;line-height:1.45}
main{max-width:1240px;margin:0 auto;padding:28px 20px 40px}
header{display:flex;justify-content:space-between;align-items:flex-end;margin-bottom:18px}
h1{font-size:26px;margin:0 0 4px;letter-spacing:-.01em}
h2{font-size:16px;margin:0 0 2px}
.sub{color:%(muted)s;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:14px;margin-bottom:16px}
.card{background:#fff;border-radius:10px;padding:14px 16px 10px;box-shadow:0 1px 3px rgba(20,30,60,.08);border-top:4px solid %(grey)s}
.card .name{font-weight:600;font-size:14px}
.card .def{color:%(muted)s;font-size:12px;min-height:18px}
.card .big{font-size:30px;font-weight:700;margin:6px 0 0;letter-spacing:-.02em}
.card .meta{display:flex;justify-content:space-between;color:%(muted)s;font-size:12px}
.card .gap{font-weight:600}
.panel{background:#fff;border-radius:10px;padding:16px 18px;box-shadow:0 1px 3px rgba(20,30,60,.08);margin-bottom:16px}
.row{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.row .panel{margin-bottom:16px}
.bottleneck{border-top-color:%(amber)s}
table{border-collapse:collapse;width:100%%;font-size:13px}
th,td{padding:6px 8px;border-bottom:1px solid %(grid)s;text-align:right;white-space:nowrap}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
th{color:%(muted)s;font-weight:600}
tr.miss td.att{color:%(red)s;font-weight:600}
tr.ok td.att{color:%(green)s;font-weight:600}
table.paths td:nth-child(3),table.paths th:nth-child(3){text-align:left;white-space:normal}
.tag{display:inline-block;background:%(amber)s;color:#fff;border-radius:4px;padding:0 6px;font-size:11px;margin-left:6px}
footer{color:%(muted)s;font-size:12px;margin-top:8px}
"""
CSS = _CSS % {
    "ink": INK,
    "font": FONT,
    "muted": MUTED,
    "grey": GREY,
    "grid": GRID,
    "red": RED,
    "green": GREEN,
    "amber": AMBER,
}


def _card(row: dict) -> str:
    name, definition = kpi_labels()[row["kpi"]]
    unit = row["unit"]
    colour = _state_colour(row["met"])
    digits = percent_decimals(row["actual"], row["target"])
    target = (
        _("no target")
        if row["target"] is None
        else _("target {target}").format(target=_value(row["target"], unit, digits))
    )
    p90 = f" · p90 {_value(row['p90'], unit)}" if row.get("p90") is not None else ""
    status = "" if row["met"] is None else ("✓ " + _("met") if row["met"] else "✗ " + _("missed"))
    baseline = _baseline_line(row, digits)
    return (
        f'<div class="card" style="border-top-color:{colour}">'
        f'<div class="name">{escape(name)}</div><div class="def">{escape(definition)}</div>'
        f'<div class="big" style="color:{colour if row["met"] is False else INK}">{_value(row["actual"], unit, digits)}</div>'
        f"{gauge(row['actual'], row['target'], unit, row['met'])}"
        f'<div class="meta"><span>{escape(target)}</span>'
        f'<span class="gap" style="color:{colour}">{escape(_gap(row["gap"], unit, digits))} {status}</span></div>'
        f'<div class="meta"><span>n = {row["count"]:,}{escape(p90)}</span></div>{baseline}</div>'
    )


def _baseline_line(row: dict, digits: int) -> str:
    """``[kpi.baseline]`` on a card: where the KPI stood before, then now, then the target."""
    if row.get("baseline") is None:
        return ""
    unit = row["unit"]
    words = _("baseline {baseline} → {actual} → target {target}").format(
        baseline=_value(row["baseline"], unit, digits),
        actual=_value(row["actual"], unit, digits),
        target="–" if row["target"] is None else _value(row["target"], unit, digits),
    )
    return f'<div class="meta baseline"><span>{escape(words)}</span></div>'


def _bottleneck_card(row: dict | None, nodes: list[dict]) -> str:
    """The bottleneck's shares, and its lateness from its ``sla_report`` row."""
    if not row or row.get("node") is None:
        body = (
            f'<div class="big" style="color:#1f9d61">{escape(_("none"))}</div>'
            f'<div class="def">{escape(_("no node breached its SLA"))}</div>'
        )
    else:
        shares = _("{share} of breaches ({count})").format(
            share=f"{row['breach_share'] * 100:.0f}%", count=f"{row['count']:,}"
        )
        over = _("{share} of time over SLA").format(share=f"{row['over_sla_share'] * 100:.0f}%")
        body = (
            f'<div class="big">{escape(row["node"])}</div>'
            f'<div class="meta"><span>{escape(shares)}</span><span>{escape(over)}</span></div>'
            f'<div class="meta"><span>{escape(_late_words(next((n for n in nodes if n["node"] == row["node"]), {})))}'
            "</span></div>"
        )
    return (
        f'<div class="card bottleneck"><div class="name">{escape(_("Bottleneck"))}</div>'
        f'<div class="def">{escape(_("largest share of breaches and time over SLA"))}</div>' + body + "</div>"
    )


def _misses_chart(rows: list[dict], top: int = 8) -> str:
    """The misses Pareto (``misses.pareto`` rows): the ``top`` causes as bars, the rest counted below."""
    most = max([r["orders"] for r in rows] + [1])
    bars = [
        {
            "label": r["group"] or "–",
            "value": r["orders"],
            "colour": RED,
            "text": f"{r['orders']:,} · {r['share'] * 100:.0f}% · {r['cumulative_share'] * 100:.0f}%",
        }
        for r in rows[:top]
    ]
    rest = rows[top:]
    words = _("{causes} more causes, {orders} orders").format(
        causes=f"{len(rest):,}", orders=f"{sum(r['orders'] for r in rest):,}"
    )
    more = f'<div class="sub">{escape(words)}</div>' if rest else ""
    return hbar_chart(bars, max_value=most, value_width=150, label_width=190) + more


def _returns_chart(rows: list[dict]) -> str:
    """Return rate per region (``return_rate`` rows of ``kpi_report`` by region), highest first."""
    rows = sorted((r for r in rows if r["actual"] is not None), key=lambda r: (-r["actual"], str(r["group"])))
    most = max([r["actual"] for r in rows] + [0.0]) or 1.0
    bars = []
    for r in rows:
        reasons = ", ".join(t["reason"] for t in r.get("top_reasons") or [])
        bars.append(
            {
                "label": _("(no region)") if r["group"] is None else str(r["group"]),
                "value": r["actual"],
                "colour": AMBER,
                "text": _("{share} of {count}").format(share=f"{r['actual'] * 100:.1f}%", count=f"{r['count']:,}")
                + (f" · {reasons}" if reasons else ""),
            }
        )
    return hbar_chart(bars, max_value=most, value_width=230, label_width=110)


def _late_words(row: dict) -> str:
    """How late a node's breached visits were: business time past the deadline, p50 and p90."""
    if row.get("late_p50_seconds") is None:
        return _("late: –")
    return _("late by {p50} (p50), {p90} (p90)").format(
        p50=approx_duration(row["late_p50_seconds"]), p90=approx_duration(row["late_p90_seconds"])
    )


def _period_text(period: Period, tz: str) -> str:
    def show(dt: datetime) -> str:
        return local(dt, tz).strftime("%Y-%m-%d %H:%M")

    if period.start and period.end:
        return _("Orders created {start} – {end}").format(start=show(period.start), end=show(period.end))
    if period.start:
        return _("Orders created since {start}").format(start=show(period.start))
    if period.end:
        return _("Orders created before {end}").format(end=show(period.end))
    return _("All orders")


def _week_label(group: Any) -> str:
    text = group.isoformat() if isinstance(group, date) else str(group)
    return text[5:] if len(text) == 10 else text


def render_dashboard(data: dict, *, tz: str, now: datetime, period: Period) -> str:
    labels = kpi_labels()
    kpis = {r["kpi"]: r for r in data["kpis"] if r["group"] == ALL}
    cards = "".join(_card(kpis[name]) for name in KPIS if name in kpis) + _bottleneck_card(
        kpis.get("bottleneck"), data["nodes"]
    )

    weekly = [r for r in data["weekly"] if r["kpi"] in ("on_time_shipping", "perfect_order")]
    weeks = sorted({r["group"] for r in weekly if r["group"] is not None})
    by = {(r["kpi"], r["group"]): r for r in weekly}
    series = []
    for name, colour in (("on_time_shipping", BLUE), ("perfect_order", PURPLE)):
        target = kpis.get(name, {}).get("target")
        series.append(
            {
                "name": labels[name][0],
                "colour": colour,
                "target": target,
                "values": [by.get((name, w), {}).get("actual") for w in weeks],
            }
        )
    trend = line_chart([_week_label(w) for w in weeks], series)

    nodes = data["nodes"]
    sla_target = kpis.get("sla_attainment", {}).get("target")
    attainment = hbar_chart(
        [
            {
                "label": n["node"],
                "value": n["attainment"],
                "colour": _state_colour(n["met"]),
                "text": "–"
                if n["attainment"] is None
                else _("{share} of {count}").format(share=f"{n['attainment'] * 100:.1f}%", count=f"{n['completed']:,}"),
            }
            for n in nodes
        ],
        max_value=1.0,
        target=sla_target,
        unit="" if sla_target is None else f"{sla_target * 100:.0f}%",
    )
    top_breaches = max([n["breaches"] for n in nodes] + [1])
    breaches = hbar_chart(
        [
            {
                "label": n["node"],
                "value": n["breaches"],
                "colour": AMBER if n["bottleneck"] else RED,
                "text": _("{breaches} · {escalations} esc · {auto} auto").format(
                    breaches=f"{n['breaches']:,}", escalations=f"{n['escalations']:,}", auto=f"{n['auto_actions']:,}"
                ),
            }
            for n in nodes
        ],
        max_value=top_breaches,
        value_width=180,
    )
    owners = data["owners"]
    top_owner = max([o["breaches"] for o in owners] + [1])
    owner_chart = hbar_chart(
        [
            {
                "label": o["owner"] or _("(auto nodes)"),
                "value": o["breaches"],
                "colour": RED,
                "text": f"{o['breaches']:,}",
            }
            for o in owners
        ],
        max_value=top_owner,
        value_width=80,
        label_width=170,
    )
    cycle = kpis.get("cycle_time_hours", {})
    marks = [("p50", cycle.get("actual"), INK), ("p90", cycle.get("p90"), MUTED)]
    if cycle.get("target"):
        marks.append((_("target"), cycle["target"], RED))
    hist = histogram(data["histogram"], marks=marks)
    misses_chart = _misses_chart(data.get("misses") or [])
    returns_chart = _returns_chart(data.get("returns") or [])

    table_rows = []
    for n in nodes:
        cls = "" if n["met"] is None else ("ok" if n["met"] else "miss")
        tag = f'<span class="tag">{escape(_("bottleneck"))}</span>' if n["bottleneck"] else ""

        def d(s):
            return "–" if s is None else approx_duration(s)

        table_rows.append(
            f'<tr class="{cls}"><td>{escape(n["node"])}{tag}</td><td>{escape(n["owner"] or _("(auto)"))}</td>'
            f"<td>{n['completed']:,}</td><td>{n['within_sla']:,}</td>"
            f'<td class="att">{_value(n["attainment"], "rate")}</td>'
            f"<td>{d(n['p50_seconds'])}</td><td>{d(n['p90_seconds'])}</td><td>{'–' if n['sla_seconds'] is None else format_duration(n['sla_seconds'])}</td>"
            f"<td>{n['breaches']:,}</td><td>{d(n['late_p50_seconds'])}</td><td>{d(n['late_p90_seconds'])}</td>"
            f"<td>{n['escalations']:,}</td><td>{n['auto_actions']:,}</td></tr>"
        )
    workload = workload_chart(data.get("workload", []))
    flow = data.get("flow") or {}
    generated = local(now, tz).strftime("%Y-%m-%d %H:%M")
    w = {
        key: escape(text)
        for key, text in {
            "title": _("Fulfillment dashboard"),
            "weekly": _("Weekly on-time shipping and perfect orders"),
            "weekly_sub": _("by the week the order was created (week starting Monday); hollow points miss the target"),
            "att": _("SLA attainment per node"),
            "att_sub": _("visits closed within their SLA; dashed line: target"),
            "br": _("Breaches per node"),
            "br_sub": _("visits that breached their SLA · escalations · automatic actions; amber: the bottleneck"),
            "cyc": _("Cycle time distribution"),
            "cyc_sub": _("shipped orders by hours from created to shipped; amber: the long tail"),
            "own": _("Breaches by owner role"),
            "own_sub": _("who owned the node visits that breached"),
            "wl": _("Workload per role"),
            "wl_sub": _(
                "node visits per business day of the role’s calendars, by when they arrived (teal) or were done (green; red: fewer done than arrived, the queue grows), same dates as above; open now, the oldest open visit and the breach share beside; ffctl report workload has the detail"
            ),
            "flow": _("Order flow"),
            "flow_sub": _(
                "how often orders went from one node straight to the next, and the median business time between; red arcs: sent back (rework)"
            ),
            "why": _("Why orders were not perfect"),
            "why_sub": _("missed orders by primary cause, most first; the text: orders · share · cumulative share"),
            "ret": _("Return rate by region"),
            "ret_sub": _("units returned / units shipped; the top return reasons by units"),
            "detail": _("Nodes in detail"),
            "times_in": _("times in {zone}").format(zone=tz),
            "generated": _("generated {at} by ffctl").format(at=generated),
            "footer": _(
                "Gap = actual − target: a time KPI misses when its gap is positive, a rate when it is negative. "
                "Time in node is wall-clock time; SLAs count each node’s business calendar. A breach is a node "
                "visit that stopped after its deadline or still runs past it, whether or not a sweep ran; late: "
                "the business time past the deadline of the breached visits."
            ),
        }.items()
    }
    w["lang"] = "zh-CN" if current() == "zh-CN" else "en"
    w["columns"] = _header_row(
        _("node"),
        _("owner"),
        _("done"),
        _("in SLA"),
        _("attainment"),
        _("p50 in node"),
        _("p90 in node"),
        _("SLA"),
        _("breaches"),
        _("late p50"),
        _("late p90"),
        _("escalations"),
        _("auto"),
    )
    return f"""<!DOCTYPE html>
<html lang="{w["lang"]}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{w["title"]} — {escape(generated)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<header>
  <div><h1>{w["title"]}</h1>
  <div class="sub">{escape(_period_text(period, tz))} · {w["times_in"]}</div></div>
  <div class="sub">{w["generated"]}</div>
</header>
<section class="cards">{cards}</section>
{_likely_panel(data.get("likely", []), tz)}
<section class="panel"><h2>{w["weekly"]}</h2>
<div class="sub">{w["weekly_sub"]}</div>
{trend}</section>
<div class="row">
<section class="panel"><h2>{w["att"]}</h2><div class="sub">{w["att_sub"]}</div>{attainment}</section>
<section class="panel"><h2>{w["br"]}</h2><div class="sub">{w["br_sub"]}</div>{breaches}</section>
</div>
<div class="row">
<section class="panel"><h2>{w["cyc"]}</h2><div class="sub">{w["cyc_sub"]}</div>{hist}</section>
<section class="panel"><h2>{w["own"]}</h2><div class="sub">{w["own_sub"]}</div>{owner_chart}</section>
</div>
<section class="panel"><h2>{w["wl"]}</h2><div class="sub">{w["wl_sub"]}</div>{workload}</section>
<section class="panel"><h2>{w["flow"]}</h2><div class="sub">{w["flow_sub"]}</div>
{flow_diagram(flow)}
{_variants_text(flow)}</section>
<div class="row">
<section class="panel"><h2>{w["why"]}</h2><div class="sub">{w["why_sub"]}</div>{misses_chart}</section>
<section class="panel"><h2>{w["ret"]}</h2><div class="sub">{w["ret_sub"]}</div>{returns_chart}</section>
</div>
<section class="panel"><h2>{w["detail"]}</h2>
<table><thead>{w["columns"]}</thead>
<tbody>{"".join(table_rows)}</tbody></table></section>
<footer>{w["footer"]}</footer>
</main>
</body>
</html>
"""
