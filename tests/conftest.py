"""Shared fixtures: TLS material from test CAs, PostgreSQL databases, running services,
SMTP sinks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from sqlalchemy import create_engine, text

from soap_service.persistence.database import Database
from tests.smtp_sink import SmtpSink
from tests.support import ServiceProcess, TlsFiles

PG_ADMIN_URL = os.environ.get(
    "SOAP_SERVICE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgresql")


def new_ca_files(folder: Path) -> TlsFiles:
    """A new CA and a server certificate from it for 127.0.0.1 and localhost."""
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


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """The test CA: the service's HTTPS certificate, and the SMTP sinks' unless told."""
    return new_ca_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def foreign_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A server certificate for 127.0.0.1 from a CA the service does not trust."""
    return new_ca_files(tmp_path_factory.mktemp("foreign-tls"))


@pytest.fixture
def start_sink(tls: TlsFiles) -> Iterator[Callable[..., SmtpSink]]:
    """Start SMTP sinks (STARTTLS with the test CA's certificate unless `cert_chain` and
    `key` say otherwise; other arguments as SmtpSink's); every one is stopped at the end."""
    sinks: list[SmtpSink] = []

    def start(**kwargs: Any) -> SmtpSink:
        kwargs.setdefault("cert_chain", tls.server_cert)
        kwargs.setdefault("key", tls.server_key)
        sink = SmtpSink(**kwargs).start()
        sinks.append(sink)
        return sink

    yield start
    for sink in sinks:
        sink.stop()


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


@pytest.fixture
def postgres_database(postgres: PostgresDatabases) -> Iterator[Database]:
    """A new database on the machine's PostgreSQL, with the service's tables."""
    database = Database(postgres.create())
    database.upgrade()
    yield database
    database.dispose()


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
