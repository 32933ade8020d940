"""Alembic environment: runs migrations on the engine handed over by `Database`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from soap_service.persistence.tables import Base

config = context.config
target_metadata = Base.metadata

# PostgreSQL: one migration at a time, even when several hosts start together.
MIGRATION_LOCK_ID = 0x50A9_5E1C


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:  # `alembic` run by hand: sqlalchemy.url from the ini file
        engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        is_postgresql = connection.dialect.name == "postgresql"
        if is_postgresql:
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if is_postgresql:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID}
                )
                connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported")
run_migrations_online()
