"""What differs between the two databases the service runs on, named once."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Dialect

from soap_service.persistence.tables import UtcDateTime

POSTGRESQL = "postgresql"


def row_lock(dialect: str, clause: str) -> str:
    """A row-locking clause on PostgreSQL; nothing on SQLite, where the one write
    transaction at a time already keeps every other writer out."""
    return clause if dialect == POSTGRESQL else ""


@functools.cache
def timestamp_format(dialect: Dialect) -> Callable[[datetime], Any]:
    """How the driver receives a UtcDateTime value, exactly as SQLAlchemy would send it:
    for the statements run on the driver's own cursor (message_insert.py, outcomes.py)."""
    # The dialect's own type: UtcDateTime's generic one would hand SQLite's driver a
    # datetime, which it writes in another format than SQLAlchemy's ("...04+00:00"
    # against "...04.000000"), and SQLite compares times as text.
    process = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else lambda value: value
