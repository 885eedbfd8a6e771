"""Pick errors only in ``pick_line``; a right pick is a flag on its shipment line. An import's
shipment wrote one pick line per line it reported, right or not: 2 of the 9 rows a two-line
shipment inserts. Now ``shipment_line.picked_right`` = 1 marks a line an import reported picked
right, and ``pick_line`` keeps the pick errors (and the pick lines of no shipment, which no
shipment line can stand for). Pick accuracy counts the same picks: pick lines + flagged lines.

Upgrade: every right pick line of a shipment sets its shipment line's flag and is deleted.
Downgrade: a pick line for every flagged shipment line (same order, line, SKU, units), the
column dropped.

Revision ID: 0016
Revises: 0015
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# a right pick line of a shipment: its shipment line (same shipment and line) says the same
_RIGHT = (
    "pick_line.error IS NULL AND pick_line.shipment_id IS NOT NULL AND EXISTS (SELECT 1 FROM shipment_line sl "
    "WHERE sl.shipment_id = pick_line.shipment_id AND sl.line_no = pick_line.line_no)"
)


def upgrade() -> None:
    op.add_column("shipment_line", sa.Column("picked_right", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE shipment_line SET picked_right = 1 WHERE EXISTS (SELECT 1 FROM pick_line pl "
        "WHERE pl.shipment_id = shipment_line.shipment_id AND pl.line_no = shipment_line.line_no "
        "AND pl.error IS NULL)"
    )
    op.execute(f"DELETE FROM pick_line WHERE {_RIGHT}")


def downgrade() -> None:
    op.execute(
        "INSERT INTO pick_line (order_id, line_no, sku, qty, shipment_id, error) "
        "SELECT order_id, line_no, sku, qty, shipment_id, NULL FROM shipment_line WHERE picked_right = 1 "
        "ORDER BY id"
    )
    with op.batch_alter_table("shipment_line") as batch_op:
        batch_op.drop_column("picked_right")
