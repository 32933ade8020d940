"""What differs between the two databases the service runs on, named once."""

from __future__ import annotations

POSTGRESQL = "postgresql"


def row_lock(dialect: str, clause: str) -> str:
    """A row-locking clause on PostgreSQL; nothing on SQLite, where the one write
    transaction at a time already keeps every other writer out."""
    return clause if dialect == POSTGRESQL else ""
