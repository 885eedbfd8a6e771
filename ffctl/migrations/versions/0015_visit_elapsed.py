"""visit_fact's replay columns: when a visit entered and stopped, its workflow, its holds, whether
it stopped past its deadline, and its elapsed business time (entered -> stopped in its node's
calendar, less holds), indexed by (node, breached, auto, paused, elapsed, ...), so ``sla replay``
counts the visits whose calendar a candidate keeps from the facts instead of the calendar's day
table (issue 20).

Derived data: the upgrade forgets the last refresh, so the first report after it rebuilds every
fact (FACTS_VERSION changed too).

Revision ID: 0015
Revises: 0014
"""
from alembic import op
import sqlalchemy as sa

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("entered_at", sa.DateTime()),
    ("stopped_at", sa.DateTime()),
    ("workflow", sa.String()),
    ("paused", sa.Float()),
    ("breached", sa.Integer()),
    ("elapsed", sa.Float()),
)
_INDEX = ["node", "breached", "auto", "paused", "elapsed", "entered_at", "stopped_at", "decided", "workflow"]


def upgrade() -> None:
    for name, type_ in _COLUMNS:
        op.add_column("visit_fact", sa.Column(name, type_, nullable=True))
    op.create_index("ix_visit_fact_replay", "visit_fact", _INDEX)
    op.execute("UPDATE fact_state SET event_id = NULL")


def downgrade() -> None:
    op.drop_index("ix_visit_fact_replay", table_name="visit_fact")
    for name, _type in reversed(_COLUMNS):
        if op.get_bind().dialect.name == "postgresql":
            op.drop_column("visit_fact", name)
        else:
            op.execute(f"ALTER TABLE visit_fact DROP COLUMN {name}")
    op.execute("UPDATE fact_state SET event_id = NULL")
