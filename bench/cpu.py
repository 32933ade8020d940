"""CPU time of the processes a benchmark runs, read from /proc (Linux): a process and its
descendants alive now, and the PostgreSQL backends serving a database. Where the 2 cores
went in a run: the service, the database, and what stands in for other machines (the
client, the recipients' mail server)."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from sqlalchemy import create_engine, text

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds), or None if the process is gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(*roots: int) -> float:
    """CPU seconds of `roots` and all their descendants alive now; 0.0 without /proc."""
    if not PROC.is_dir():
        return 0.0
    children: dict[int, list[int]] = defaultdict(list)
    cpu: dict[int, float] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children[stat[0]].append(int(entry.name))
            cpu[int(entry.name)] = stat[1]
    total, todo = 0.0, list(roots)
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += children.get(pid, [])
    return total


def postgres_cpu_seconds(database_url: str) -> float:
    """CPU seconds of the backends connected to the database now (PostgreSQL on this
    machine), this query's own excepted; 0.0 without /proc."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            pids = connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalars()
            return sum(tree_cpu_seconds(pid) for pid in pids)
    finally:
        engine.dispose()
