"""Several hosts, simulated on one machine: two `soap-service serve` processes on two ports
and three delivery workers sharing one PostgreSQL database and one keyring. A payroll run
of 10,000 payslips goes to both servers; one server is SIGKILLed mid-run and the client
sends what it had in flight again, to the other, with the same Reference. Every payslip
is accepted once, every recipient notified once, nothing lost."""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from lxml import etree
from sqlalchemy import create_engine, func, select

from soap_service.persistence.tables import MessageRow
from tests.conftest import PostgresDatabases
from tests.e2e.stack import LEASE_SECONDS, expected_message_id, wait_until
from tests.smtp_sink import SmtpSink
from tests.support import (
    TNS,
    ServiceProcess,
    TlsFiles,
    WorkerProcess,
    envelope,
    security_header,
    send_message_xml,
)

pytestmark = pytest.mark.e2e

PAYSLIPS = 10_000
KILL_AFTER = 3_000  # accepted payslips before server A is killed
CLIENT_THREADS = 8
PDF = base64.b64encode(b"%PDF-1.4\n" + b"payslip " * 1000).decode()


class PayrollRun:
    """The payroll program: each payslip to one server, and on a lost connection or a
    Server.* fault the same envelope (same Reference) again, to the other."""

    def __init__(self, servers: list[ServiceProcess], username: str, password: str) -> None:
        self._servers = servers
        self._header = security_header(username, password)
        self._local = threading.local()
        self.accepted: dict[str, str] = {}  # reference -> MessageId
        self.resent = 0
        self._lock = threading.Lock()
        self.enough = threading.Event()  # KILL_AFTER payslips are accepted

    def send(self, number: int) -> None:
        reference = f"payroll-2026-12-{number:05d}"
        body = envelope(
            send_message_xml(
                reference,
                recipients=(f"employee-{number:05d}@example.ch",),
                attachments=(("payslip.pdf", "application/pdf", PDF),),
            ),
            self._header,
        )
        for attempt in range(20):
            server = self._servers[(number + attempt) % len(self._servers)]
            message_id = self._post(server, body)
            if message_id is not None:
                break
            with self._lock:
                self.resent += 1
        else:
            raise AssertionError(f"{reference} was never accepted")
        with self._lock:
            assert self.accepted.setdefault(reference, message_id) == message_id
            if len(self.accepted) >= KILL_AFTER:
                self.enough.set()

    def _post(self, server: ServiceProcess, body: bytes) -> str | None:
        sessions = self._local.__dict__.setdefault("sessions", {})
        session = sessions.setdefault(server.port, server.session())
        try:
            response = session.post(
                server.url, data=body, headers={"Content-Type": "text/xml"}, timeout=60
            )
        except requests.RequestException:
            sessions.pop(server.port, None)  # a dead server's connection: start afresh
            return None
        root = etree.fromstring(response.content)
        message_id = root.findtext(f".//{{{TNS}}}MessageId")
        if response.status_code == 200 and message_id:
            return message_id
        code = root.findtext(".//faultcode") or ""
        assert "Server." in code, response.text[:300]  # only these are worth sending again
        return None


def start_worker(server: ServiceProcess, sink: SmtpSink, tls: TlsFiles, name: str) -> WorkerProcess:
    return server.worker(
        name,
        SOAP_SERVICE_SMTP_RELAY=f"127.0.0.1:{sink.port}",
        SOAP_SERVICE_SMTP_CA_FILE=str(tls.ca_cert),
        SOAP_SERVICE_SMTP_TIMEOUT="10",
        SOAP_SERVICE_LEASE_SECONDS=str(LEASE_SECONDS),
        SOAP_SERVICE_WORKER_POLL_MS="50",
    ).start()


def test_two_servers_and_three_workers_lose_nothing_when_a_server_is_killed(
    tmp_path: Path,
    tls: TlsFiles,
    postgres: PostgresDatabases,
    start_sink: Callable[..., SmtpSink],
    record_property: Callable[[str, object], None],
) -> None:
    database_url = postgres.create()
    keyring = {"SOAP_SERVICE_MASTER_KEY_FILE": str(tmp_path / "shared-keys.json")}
    servers = [
        ServiceProcess(
            data_dir=tmp_path / host, database_url=database_url, tls=tls, extra_env=keyring
        )
        for host in ("host-a", "host-b")
    ]
    servers[0].cli("init")  # the first host creates the keyring the other is given
    workers: list[WorkerProcess] = []
    try:
        for server in servers:
            server.start()
        username, password = servers[0].add_account()
        sink = start_sink()
        workers += [start_worker(servers[n % 2], sink, tls, f"worker-{n}") for n in range(3)]
        run = PayrollRun(servers, username, password)

        started = time.monotonic()
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            sent = pool.map(run.send, range(PAYSLIPS))
            assert run.enough.wait(timeout=300), "the run did not get going"
            servers[0].kill()  # host A dies mid-run, whatever it had in flight
            list(sent)  # re-raises what went wrong in a thread
        accepted_after = time.monotonic() - started

        expected = {expected_message_id(mid, 1) for mid in run.accepted.values()}
        wait_until(
            lambda: expected <= {mail.message_id for mail in sink.received},
            "every payslip's notification at the SMTP server",
            timeout=300,
            why=lambda: f"{len(sink.received)} of {PAYSLIPS} received",
        )
        sent_after = time.monotonic() - started
    finally:
        for worker in workers:
            worker.stop()
        for server in servers:
            server.stop()

    engine = create_engine(database_url)
    with engine.connect() as connection:
        stored = connection.execute(select(func.count()).select_from(MessageRow)).scalar_one()
        references = connection.execute(select(MessageRow.reference)).scalars().all()
    engine.dispose()
    print(
        f"scale-out: {PAYSLIPS} payslips accepted after {accepted_after:.1f} s "
        f"({PAYSLIPS / accepted_after:.0f}/s), {run.resent} sent again to the other host, "
        f"all notified after {sent_after:.1f} s"
    )
    record_property("accepted_seconds", round(accepted_after, 1))
    record_property("resent", run.resent)
    record_property("notified_seconds", round(sent_after, 1))
    assert len(run.accepted) == PAYSLIPS
    assert len(set(run.accepted.values())) == PAYSLIPS  # one message per payslip
    assert stored == PAYSLIPS and len(set(references)) == PAYSLIPS  # accepted exactly once
    counts = Counter(mail.message_id for mail in sink.received)
    assert set(counts) == expected  # nothing lost, nothing else
    assert max(counts.values()) == 1  # no worker died: nobody notified twice
    assert run.resent > 0, "the kill must have caught requests in flight"
