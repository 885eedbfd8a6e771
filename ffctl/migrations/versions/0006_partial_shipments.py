"""Partial shipments and backorders (SPEC 9.2): an order has many shipments, each with lines.

- shipment: keyed by ``shipment_id`` (was one row per order, keyed by order_id). Each existing
  shipment becomes ``<order_id>/1``, with one shipment line per order line (an order shipped
  before 0006 shipped in full).
- shipment_line: what left in one shipment, per order line.
- order_line.shipped / order_line.cancelled: units shipped and units cancelled. ``allocated``
  keeps meaning "units the line was served from stock": reserved now plus shipped, so
  ``reserved = allocated - shipped`` and the backorder is ``qty - cancelled - allocated``.
  Lines of orders shipped before 0006 are shipped (and served) in full.
- pick_line: one row per (shipment, line) with the pick error it was recorded with (NULL: right),
  instead of one per order line.
- order_fact: units, units_on_time and due for the fill rate (derived: the next report rebuilds
  the facts, since their definitions' version changed; SQLite's covering report indexes are
  dropped and built again on first use).

SQLite adds the columns with ALTER TABLE (a rebuild of order_line would cascade into its
reservations); the CHECK rides on the last column added.

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SERVED_CHECK = "cancelled >= 0 AND shipped >= 0 AND shipped <= allocated AND allocated + cancelled <= qty"
SHIPPED_ORDERS = "SELECT order_id FROM orders WHERE status IN ('shipped', 'delivered')"


def _shipment_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("shipment_id", sa.String(), nullable=False),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("shipped_at", sa.DateTime(), nullable=False),
        sa.Column("carrier", sa.String(), nullable=True),
        sa.Column("tracking", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.order_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("shipment_id", name=f"pk_{name}"),
    )


def _rename_with_key(old: str, new: str) -> None:
    """Rename a table; on PostgreSQL its primary key too (index names are schema-wide)."""
    op.rename_table(old, new)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER INDEX IF EXISTS {old}_pkey RENAME TO {new}_pkey")
        op.execute(f"ALTER INDEX IF EXISTS pk_{old} RENAME TO pk_{new}")


def _drop_report_indexes() -> None:
    """SQLite's per-cut covering indexes on order_fact (kpi._ensure_indexes builds them on use)."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for (name,) in bind.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index' "
                                            "AND name LIKE 'ix_order_fact_by_%'").fetchall():
            op.execute(f"DROP INDEX {name}")


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    _drop_report_indexes()
    op.add_column("order_fact", sa.Column("units", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("order_fact", sa.Column("units_on_time", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("order_fact", sa.Column("due", sa.Date(), nullable=True))
    # order lines: what shipped and what was cancelled
    op.add_column("order_line", sa.Column("shipped", sa.Integer(), nullable=False, server_default="0"))
    op.execute(f"UPDATE order_line SET shipped = qty, allocated = qty WHERE order_id IN ({SHIPPED_ORDERS})")
    if pg:
        op.add_column("order_line", sa.Column("cancelled", sa.Integer(), nullable=False, server_default="0"))
        op.create_check_constraint("ck_order_line_served", "order_line", SERVED_CHECK)
    else:
        op.execute("ALTER TABLE order_line ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0 "
                   f"CONSTRAINT ck_order_line_served CHECK ({SERVED_CHECK})")

    # shipments keyed by their own id, with lines
    _rename_with_key("shipment", "shipment_0005")
    _shipment_table("shipment")
    op.create_index("ix_shipment_order", "shipment", ["order_id"])
    op.execute("INSERT INTO shipment (shipment_id, order_id, shipped_at, carrier, tracking) "
               "SELECT order_id || '/1', order_id, shipped_at, carrier, tracking FROM shipment_0005")
    op.create_table(
        "shipment_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("shipment_id", sa.String(), nullable=False),
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.CheckConstraint("qty > 0", name="ck_shipment_line_qty_pos"),
        sa.ForeignKeyConstraint(["shipment_id"], ["shipment.shipment_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("shipment_id", "line_no", name="uq_shipment_line"),
    )
    op.create_index("ix_shipment_line_order", "shipment_line", ["order_id"])
    op.execute("INSERT INTO shipment_line (shipment_id, order_id, line_no, sku, qty) "
               "SELECT s.order_id || '/1', l.order_id, l.line_no, l.sku, l.qty FROM shipment_0005 s "
               "JOIN order_line l ON l.order_id = s.order_id")
    op.drop_table("shipment_0005")

    # pick lines per shipment, with their error
    with op.batch_alter_table("pick_line") as batch_op:
        batch_op.add_column(sa.Column("shipment_id", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("error", sa.String(), nullable=True))
        batch_op.drop_constraint("uq_pick_line", type_="unique")
        batch_op.create_unique_constraint("uq_pick_line", ["shipment_id", "line_no"])
    op.execute("UPDATE pick_line SET shipment_id = order_id || '/1', error = ("
               "SELECT CASE WHEN l.sku IS NULL THEN 'unknown_line' WHEN l.sku <> pick_line.sku THEN 'wrong_sku' "
               "WHEN l.qty <> pick_line.qty THEN 'wrong_qty' END FROM order_line l "
               "WHERE l.order_id = pick_line.order_id AND l.line_no = pick_line.line_no)")
    op.execute("UPDATE pick_line SET error = 'unknown_line' WHERE NOT EXISTS (SELECT 1 FROM order_line l "
               "WHERE l.order_id = pick_line.order_id AND l.line_no = pick_line.line_no)")


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    _drop_report_indexes()
    if pg:
        for column in ("due", "units_on_time", "units"):
            op.drop_column("order_fact", column)
    else:
        for column in ("due", "units_on_time", "units"):
            op.execute(f"ALTER TABLE order_fact DROP COLUMN {column}")
    # a partially shipped order was open before 0006: it keeps its place, and its reservations
    op.execute("DELETE FROM pick_line WHERE id NOT IN (SELECT MIN(id) FROM pick_line GROUP BY order_id, line_no)")
    with op.batch_alter_table("pick_line") as batch_op:
        batch_op.drop_constraint("uq_pick_line", type_="unique")
        batch_op.create_unique_constraint("uq_pick_line", ["order_id", "line_no"])
        batch_op.drop_column("error")
        batch_op.drop_column("shipment_id")

    _rename_with_key("shipment", "shipment_0006")
    op.create_table(
        "shipment",
        sa.Column("order_id", sa.String(), nullable=False),
        sa.Column("shipped_at", sa.DateTime(), nullable=False),
        sa.Column("carrier", sa.String(), nullable=True),
        sa.Column("tracking", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.order_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("order_id"),
    )
    # one shipment per shipped order: its last one (the one that completed it)
    op.execute("INSERT INTO shipment (order_id, shipped_at, carrier, tracking) "
               "SELECT s.order_id, s.shipped_at, s.carrier, s.tracking FROM shipment_0006 s "
               f"WHERE s.order_id IN ({SHIPPED_ORDERS}) AND s.shipment_id = (SELECT MAX(x.shipment_id) "
               "FROM shipment_0006 x WHERE x.order_id = s.order_id AND x.shipped_at = (SELECT MAX(y.shipped_at) "
               "FROM shipment_0006 y WHERE y.order_id = s.order_id))")
    op.drop_index("ix_shipment_line_order", table_name="shipment_line")
    op.drop_table("shipment_line")
    op.drop_index("ix_shipment_order", table_name="shipment_0006")
    op.drop_table("shipment_0006")

    # before 0006 a line's allocated counted what it still held: shipped units leave it
    op.execute(f"UPDATE order_line SET allocated = allocated - shipped WHERE order_id NOT IN ({SHIPPED_ORDERS})")
    if pg:
        op.drop_constraint("ck_order_line_served", "order_line", type_="check")
        op.drop_column("order_line", "cancelled")
        op.drop_column("order_line", "shipped")
    else:
        op.execute("ALTER TABLE order_line DROP COLUMN cancelled")  # takes its CHECK with it
        op.execute("ALTER TABLE order_line DROP COLUMN shipped")
