"""When PostgreSQL cannot be reached the caller gets Server.Unavailable, the service stays
up, and it serves again as soon as the database is back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PG_ADMIN_URL, PostgresDatabases
from tests.support import ServiceProcess, TlsFiles, envelope, fault_of, security_header

pytestmark = pytest.mark.e2e


@pytest.fixture
def pg_service(
    tmp_path: Path, tls: TlsFiles, postgres: PostgresDatabases
) -> Iterator[ServiceProcess]:
    service = ServiceProcess(
        data_dir=tmp_path / "var", database_url=postgres.create(), tls=tls, workers=1
    )
    service.start()
    yield service
    service.stop()


def rename_database(old: str, new: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
            {"name": old},
        )
        connection.execute(text(f'ALTER DATABASE "{old}" RENAME TO "{new}"'))
    admin.dispose()


def test_unreachable_database_is_server_unavailable_until_it_returns(
    pg_service: ServiceProcess,
) -> None:
    username, password = pg_service.add_account()
    header = security_header(username, password)
    body = "<m:GetStatus><m:Reference>absent</m:Reference></m:GetStatus>"
    assert fault_of(pg_service.post(envelope(body, header)))[0] == "Client.NotFound"

    name = pg_service.database_url.rsplit("/", 1)[1]
    hidden = f"{name}_away_{uuid.uuid4().hex[:4]}"
    rename_database(name, hidden)
    try:
        code, text_ = fault_of(pg_service.post(envelope(body, header)))
        assert code == "Server.Unavailable"
        assert "retry" in text_
        health = pg_service.session().get(f"{pg_service.base_url}/health", timeout=10)
        assert health.status_code == 503
        assert pg_service.is_running()
    finally:
        rename_database(hidden, name)

    assert fault_of(pg_service.post(envelope(body, header)))[0] == "Client.NotFound"
    assert pg_service.session().get(f"{pg_service.base_url}/health", timeout=10).status_code == 200
