"""Shared fixtures: TLS material from a test CA, PostgreSQL databases, running services."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from sqlalchemy import create_engine, text

from tests.support import ServiceProcess, TlsFiles

PG_ADMIN_URL = os.environ.get(
    "SOAP_SERVICE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    server.private_key_pem.write_to_path(str(folder / "server-key.pem"))
    server.private_key_and_cert_chain_pem.write_to_path(str(folder / "server-chain.pem"))
    return TlsFiles(
        ca_cert=folder / "ca.pem",
        server_cert=folder / "server-chain.pem",
        server_key=folder / "server-key.pem",
    )


class PostgresDatabases:
    """Creates throw-away databases on the machine's PostgreSQL and drops them at the end."""

    def __init__(self) -> None:
        # pre_ping: a test restarts PostgreSQL, which kills pooled connections.
        self._admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        self._created: list[str] = []

    def create(self) -> str:
        name = f"soap_test_{uuid.uuid4().hex[:12]}"
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self._created.append(name)
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name

    def drop_all(self) -> None:
        with self._admin.connect() as connection:
            for name in self._created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._admin.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases()
    yield databases
    databases.drop_all()


def database_url_for(backend: str, folder: Path, postgres: PostgresDatabases) -> str:
    if backend == "sqlite":
        return f"sqlite:///{folder / 'service.sqlite3'}"
    return postgres.create()


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresDatabases
) -> str:
    return database_url_for(request.param, tmp_path, postgres)


@pytest.fixture(scope="module", params=BACKENDS)
def service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tls: TlsFiles,
    postgres: PostgresDatabases,
) -> Iterator[ServiceProcess]:
    """A running service per backend, shared by the tests of one module."""
    folder = tmp_path_factory.mktemp(f"service-{request.param}")
    process = ServiceProcess(
        data_dir=folder / "var",
        database_url=database_url_for(request.param, folder, postgres),
        tls=tls,
    )
    process.start()
    yield process
    process.stop()
