"""Alembic environment: ffctl hands over its engine through ``config.attributes``."""

from alembic import context
from sqlmodel import SQLModel

import ffctl.core.models

ffctl.core.models.load_all()  # registers every table, the report facts too
target_metadata = SQLModel.metadata


def render_item(type_, obj, autogen_context):
    """Migrations stay independent of models.py: UTCDateTime is a plain DateTime column."""
    if type_ == "type" and obj.__class__.__name__ == "UTCDateTime":
        return "sa.DateTime()"
    if type_ == "type" and obj.__class__.__name__ == "AutoString":
        return "sa.String()"
    return False


def run_migrations_online() -> None:
    engine = context.config.attributes["ffctl_engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            render_item=render_item,
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
