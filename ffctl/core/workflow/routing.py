"""An order's routing facts: what a workflow's ``match`` and a node's ``when`` look at.

One rule, wherever the order comes from (a CSV row, the store): the order's region, else its
customer's; its sales rep, else its customer's; its priority, else 0; its lines' SKUs and their
products' categories; custom items when any line's product is custom. ``config.matches`` decides
whether the facts fit a spec; ``entry.EntryPlanner`` routes an order by them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlmodel import col

from ffctl.core.bulk import is_postgresql, keyed_param, keyed_value
from ffctl.core.models import Customer, Order, OrderLine, Product

if TYPE_CHECKING:
    from ffctl.core.config import Config

CHUNK = 500


def routing_facts(
    order_id: str,
    created_at,
    *,
    channel,
    region,
    customer,
    sales_rep,
    priority,
    tier,
    customer_region,
    customer_rep,
    lines: Iterable[tuple],
) -> dict:
    """The facts of one order; ``lines`` are its (sku, category, custom) tuples."""
    skus, categories, custom = set(), set(), False
    for sku, category, is_custom in lines:
        skus.add(sku)
        if category:
            categories.add(category)
        if is_custom:
            custom = True
    return {
        "order_id": order_id,
        "created_at": created_at,
        "channel": channel,
        "region": region or customer_region,
        "customer": customer,
        "sales_rep": sales_rep or customer_rep,
        "priority": priority or 0,
        "tier": tier,
        "has_custom_items": custom,
        "categories": categories,
        "skus": skus,
    }


def match_attrs(facts: dict) -> dict:
    """The facts as ``matches`` reads them (``category``/``sku``: the lines' values)."""
    attrs = dict(facts)
    attrs["category"] = facts.get("categories", set())
    attrs["sku"] = facts.get("skus", set())
    return attrs


def _fact_statements(postgresql: bool) -> tuple:
    """``order_facts``' two statements (lines, orders), built once per process and backend: an
    advance reads one order's facts, and building the statements cost more than running them."""
    got = _STATEMENTS.get(postgresql)
    if got is None:
        lines = (
            sa.select(col(OrderLine.order_id), col(OrderLine.sku), col(Product.category), col(Product.custom))
            .join(Product, col(Product.sku) == OrderLine.sku)
            .where(keyed_param(col(OrderLine.order_id), "ids", postgresql=postgresql))
        )
        orders: Any = (  # ten columns: past the stubs' typed overloads
            sa.select(
                col(Order.order_id),
                col(Order.created_at),
                col(Order.channel),
                col(Order.region),
                col(Order.customer),
                col(Order.sales_rep),
                col(Order.priority),
                col(Customer.tier),
                col(Customer.region).label("customer_region"),
                col(Customer.sales_rep).label("customer_rep"),
            )
            .join(Customer, col(Customer.customer) == Order.customer)
            .where(keyed_param(col(Order.order_id), "ids", postgresql=postgresql))
        )
        got = _STATEMENTS[postgresql] = (lines, orders)
    return got


_STATEMENTS: dict[bool, tuple] = {}


def order_facts(session: Session, order_ids: Iterable[str]) -> list[dict]:
    """The routing facts of stored orders, read in chunks (in the order given; unknown ids left out)."""
    ids = list(dict.fromkeys(order_ids))
    facts: dict[str, dict] = {}
    pg = is_postgresql(session)
    lines_stmt, orders_stmt = _fact_statements(pg)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        keys = {"ids": keyed_value(chunk, postgresql=pg)}
        lines: dict[str, list[tuple]] = {}
        for line in session.execute(lines_stmt, keys):
            lines.setdefault(line.order_id, []).append((line.sku, line.category, line.custom))
        r: sa.Row  # ten columns: past the stubs' typed overloads
        for r in session.execute(orders_stmt, keys):
            facts[r.order_id] = routing_facts(
                r.order_id,
                r.created_at,
                channel=r.channel,
                region=r.region,
                customer=r.customer,
                sales_rep=r.sales_rep,
                priority=r.priority,
                tier=r.tier,
                customer_region=r.customer_region,
                customer_rep=r.customer_rep,
                lines=lines.get(r.order_id, ()),
            )
    return [facts[i] for i in ids if i in facts]


def needs_facts(cfg: Config, workflow: str, seq: int) -> bool:
    """Whether a node from ``seq`` on has a ``when`` (only then are the order's facts read)."""
    nodes = next((wf.nodes for wf in cfg.workflows if wf.name == workflow), ())
    return any(cfg.nodes[n].when for n in nodes[seq:] if n in cfg.nodes)


def workflow_nodes(cfg: Config, workflow: str) -> tuple[str, ...]:
    """The nodes of ``workflow`` in order."""
    return next(wf.nodes for wf in cfg.workflows if wf.name == workflow)
