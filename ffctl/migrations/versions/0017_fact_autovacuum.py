"""PostgreSQL: autovacuum visits the report facts after 0.5% of their rows changed, not 20%.

Reports step to each percentile's rank through index-only scans of the facts' indexes; a page
changed since its last vacuum makes every index entry on it a heap fetch too (after 1% of a
million orders changed, 451,101 heap fetches in one line cut's 1.2M steps). With the default
scale factors (20% of a table's rows updated, 20% inserted) autovacuum would never come for
a 1% change, so the facts' pages stayed not all-visible until the next full rebuild. SQLite:
nothing to do.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

FACTS = ("order_fact", "node_fact", "visit_fact", "visit_day", "group_fact", "flow_edge", "flow_path", "work_fact")
SETTINGS = (
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_insert_scale_factor",
    "autovacuum_analyze_scale_factor",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in FACTS:
        op.execute(f"ALTER TABLE {table} SET ({', '.join(f'{s} = 0.005' for s in SETTINGS)})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in FACTS:
        op.execute(f"ALTER TABLE {table} RESET ({', '.join(SETTINGS)})")
