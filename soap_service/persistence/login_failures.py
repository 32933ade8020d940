"""Failed sender logins, counted by key (a username's, a client address's)."""

from __future__ import annotations

import functools
import random
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from soap_service.domain.ports import LoginFailures
from soap_service.persistence.dialects import POSTGRESQL
from soap_service.persistence.tables import UtcDateTime, login_failures
from soap_service.persistence.transactions import Transactions

# Forget old failures on about one call in this many: cheap, and the table stays small.
PRUNE_ONE_IN = 50


class LoginFailureQueries(Transactions):
    def login_failures(self, keys: list[str]) -> dict[str, LoginFailures]:
        with self._transaction(read_only=True) as connection:
            rows = connection.execute(
                select(login_failures).where(login_failures.c.key.in_(keys))
            ).all()
        return {
            row.key: LoginFailures(
                failures=row.failures,
                last_failure_at=row.last_failure_at,
                blocked_until=row.blocked_until,
            )
            for row in rows
        }

    def add_login_failure(self, key: str, *, now: datetime, forget_before: datetime) -> int:
        with self._transaction() as connection:
            if random.randrange(PRUNE_ONE_IN) == 0:
                connection.execute(
                    delete(login_failures).where(login_failures.c.last_failure_at < forget_before)
                )
            counted: int = connection.execute(
                _count_failure(connection.dialect.name),
                {"key": key, "now": now, "forget_before": forget_before},
            ).scalar_one()
        return counted

    def block_logins(self, key: str, until: datetime) -> None:
        with self._transaction() as connection:
            connection.execute(
                update(login_failures)
                .where(login_failures.c.key == key)
                .values(blocked_until=until)
            )

    def clear_login_failures(self, key: str) -> None:
        with self._transaction() as connection:
            connection.execute(delete(login_failures).where(login_failures.c.key == key))


@functools.cache
def _count_failure(dialect: str) -> Any:
    """One more failure for the key, in one statement: a count whose last failure is older
    than forget_before starts again at one. SQLite and PostgreSQL share INSERT ... ON
    CONFLICT DO UPDATE ... RETURNING, but SQLAlchemy spells it with each dialect's insert()."""
    upsert = pg_insert if dialect == POSTGRESQL else sqlite_insert
    now = bindparam("now", type_=UtcDateTime())
    forget_before = bindparam("forget_before", type_=UtcDateTime())
    column = login_failures.c
    statement = upsert(login_failures).values(key=bindparam("key"), failures=1, last_failure_at=now)
    return statement.on_conflict_do_update(
        index_elements=[column.key],
        set_={
            "failures": case(
                (column.last_failure_at < forget_before, 1), else_=column.failures + 1
            ),
            "last_failure_at": now,
        },
    ).returning(column.failures)
