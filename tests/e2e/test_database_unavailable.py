"""When PostgreSQL cannot be reached the caller gets Server.Unavailable, the service stays
up, and it serves again as soon as the database is back."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.conftest import PG_ADMIN_URL, PostgresDatabases
from tests.e2e.stack import message_id_of
from tests.support import (
    ServiceProcess,
    SmtpChannelProcess,
    TlsFiles,
    count_messages,
    envelope,
    fault_of,
    security_header,
    send_message_xml,
)

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


def terminate_connections(name: str) -> int:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        killed = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = :name"
            ),
            {"name": name},
        ).scalar_one()
    admin.dispose()
    return int(killed)


def rename_database(old: str, new: str) -> None:
    terminate_connections(old)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
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


def test_send_message_survives_killed_connections_and_stores_only_what_it_confirmed(
    pg_service: ServiceProcess,
) -> None:
    """SendMessage's insert runs on the driver's own cursor: a connection that died in the
    pool is translated to Server.Unavailable like any other statement's, the pool starts
    afresh, and nothing half-stored remains."""
    username, password = pg_service.add_account()
    header = security_header(username, password)
    name = pg_service.database_url.rsplit("/", 1)[1]

    def send(reference: str) -> requests.Response:
        return pg_service.post(envelope(send_message_xml(reference), header))

    # Four at once: the worker's four threads leave four connections in the pool.
    with ThreadPoolExecutor(4) as pool:
        before = [message_id_of(answer) for answer in pool.map(send, ["a", "b", "c", "d"])]
    assert terminate_connections(name) >= 4
    # A dead connection is found by using it: one Unavailable, then a fresh pool (the
    # other three dead connections are not handed out again).
    assert fault_of(send("after-kill"))[0] == "Server.Unavailable"
    after = [message_id_of(send(reference)) for reference in ["after-kill", "e", "f", "g"]]
    assert len(set(before + after)) == 8

    hidden = f"{name}_away_{uuid.uuid4().hex[:4]}"
    rename_database(name, hidden)
    try:
        code, text_ = fault_of(send("while-away"))
        assert code == "Server.Unavailable"
        assert "retry" in text_
        assert pg_service.is_running()
    finally:
        rename_database(hidden, name)

    third = message_id_of(send("while-away"))  # the same reference, now stored once
    assert message_id_of(send("while-away")) == third
    assert count_messages(pg_service.database_url) == 9


def test_smtp_submissions_get_451_while_the_database_is_away_and_250_once_it_is_back(
    pg_service: ServiceProcess,
) -> None:
    """An MTA keeps the mail and tries again on a 4xx: nothing is lost, nothing doubled."""
    channel = SmtpChannelProcess(service=pg_service).start()
    try:
        username, password = pg_service.add_account()
        mail = b"Subject: Payslip\r\nMessage-ID: <away-1@firm.example>\r\n\r\nYour payslip.\r\n"
        name = pg_service.database_url.rsplit("/", 1)[1]
        with channel.connect(login=(username, password)) as client:
            hidden = f"{name}_away_{uuid.uuid4().hex[:4]}"
            rename_database(name, hidden)
            try:
                client.mail("hr@firm.example")
                client.rcpt("anna@example.ch")
                code, text_ = client.data(mail)
                assert (code, text_.decode()) == (
                    451,
                    "4.3.0 The service's database is unavailable; try again later",
                )
                with channel.connect() as other:
                    assert other.docmd("AUTH", plain_auth("someone", "password")) == (
                        454,
                        b"4.7.0 Temporary authentication failure: the service's database is "
                        b"unavailable",
                    )
                assert channel.is_running()
            finally:
                rename_database(hidden, name)
            first = client.sendmail("hr@firm.example", ["anna@example.ch"], mail)
            assert first == {}
            client.sendmail("hr@firm.example", ["anna@example.ch"], mail)
        assert count_messages(pg_service.database_url) == 1
    finally:
        channel.stop()


def plain_auth(username: str, password: str) -> str:
    return "PLAIN " + base64.b64encode(f"\0{username}\0{password}".encode()).decode()
