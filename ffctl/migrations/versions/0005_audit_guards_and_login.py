"""The audit trail holds against the database's own tools, and names the OS login.

- SQLite: ``REPLACE INTO event`` (and ``INSERT OR REPLACE``) rewrote an event without firing the
  delete trigger of 0002: a trigger now refuses any insert that reuses an existing event id.
- PostgreSQL: ``TRUNCATE event`` emptied the trail (0002's triggers are per row): a statement
  trigger refuses it. Running ffctl as a role that only has INSERT and SELECT on ``event`` (and
  does not own it, so it cannot disable the triggers) is in docs/operations.md.
- ``event.login``: the operating-system login that ran the command, beside ``actor`` (``--as``
  is advisory: anyone may type an admin's name). NULL for events written before 0005.

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("event", sa.Column("login", sa.String(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER event_no_truncate BEFORE TRUNCATE ON event "
            "FOR EACH STATEMENT EXECUTE FUNCTION ffctl_event_append_only()"
        )
    else:
        # NEW.id is -1 when the insert leaves the id to SQLite (every ffctl writer): no lookup then
        op.execute(
            "CREATE TRIGGER event_no_replace BEFORE INSERT ON event "
            "WHEN NEW.id > 0 AND EXISTS (SELECT 1 FROM event WHERE id = NEW.id) "
            "BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: an insert over an existing event is refused'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER event_no_truncate ON event")
        op.drop_column("event", "login")
    else:
        op.execute("DROP TRIGGER event_no_replace")
        import sqlite3

        if sqlite3.sqlite_version_info >= (3, 35):
            op.execute("ALTER TABLE event DROP COLUMN login")  # keeps 0002's triggers, unlike a rebuild
            return
        with op.batch_alter_table("event") as batch_op:  # an older SQLite: rebuild, then restore 0002's triggers
            batch_op.drop_column("login")
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER event_no_{verb.lower()} BEFORE {verb} ON event "
                f"BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: {verb} on event is refused'); END"
            )
