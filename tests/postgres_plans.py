"""The plans PostgreSQL makes for the statements the store's connections run, as
auto_explain reports them (sent back to the client as a notice), each a generic plan: what
PostgreSQL may choose on its own for a prepared query once its generic plan looks as cheap
as the custom ones, which it does at a run's start, while the tables are small."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


@contextmanager
def generic_plans(engine: Engine, wanted: Callable[[str], bool]) -> Iterator[list[dict[str, Any]]]:
    """The plan of every statement whose text `wanted` accepts, on connections the engine
    opens from now on (its pool is emptied first)."""
    found: list[dict[str, Any]] = []

    def explain_everything(dbapi_connection: Any, _: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("LOAD 'auto_explain'")
            for setting in ("log_min_duration = 0", "log_analyze = on", "log_format = json"):
                cursor.execute(f"SET auto_explain.{setting}")
            cursor.execute("SET auto_explain.log_level = notice")
            cursor.execute("SET plan_cache_mode = force_generic_plan")
        dbapi_connection.commit()

        def keep(notice: Any) -> None:
            message = notice.message_primary or ""
            if message.startswith("duration:"):
                explained = json.loads(message.split("plan:", 1)[1])
                if wanted(explained["Query Text"]):
                    found.append(explained["Plan"])

        dbapi_connection.add_notice_handler(keep)

    engine.dispose()
    event.listen(engine, "connect", explain_everything)
    try:
        yield found
    finally:
        event.remove(engine, "connect", explain_everything)


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a plan, as EXPLAIN (FORMAT JSON) writes them."""
    found = [plan]
    for child in plan.get("Plans", []):
        found += nodes(child)
    return found
