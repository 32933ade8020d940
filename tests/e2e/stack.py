"""A running SOAP server with its own database, one sender account, and the delivery
workers a test starts: the end-to-end tests' stack (`make_stack` in conftest.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zeep
from lxml import etree
from sqlalchemy import create_engine, func, select

from soap_service.persistence.tables import EventRow, RecipientRow
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

LEASE_SECONDS = 3
# The name in the service's public URL: the right-hand side of every Message-ID.
MESSAGE_ID_HOST = "127.0.0.1"
FINAL_OR_SENT = frozenset({"sent", "failed", "delivered", "expired", "cancelled"})


def new_reference() -> str:
    return f"fault-{uuid.uuid4().hex[:12]}"


def expected_message_id(message_id: str, position: int) -> str:
    return f"<{message_id}.{position}@{MESSAGE_ID_HOST}>"


def wait_until(
    condition: Callable[[], Any],
    what: str,
    *,
    timeout: float,
    why: Callable[[], str] = lambda: "",
) -> Any:
    """Poll `condition` until it returns something true; fail clearly at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{why()}")
        time.sleep(0.05)


def message_id_of(response: Any) -> str:
    assert response.status_code == 200, (response.status_code, response.text[:500])
    found = etree.fromstring(response.content).findtext(f".//{{{TNS}}}MessageId")
    assert found, response.text[:500]
    return found


@dataclass
class Stack:
    """A running SOAP server with one sender account, and the workers a test starts."""

    service: ServiceProcess
    tls: TlsFiles
    username: str
    password: str
    workers: list[WorkerProcess] = field(default_factory=list)
    _client: zeep.Client | None = None

    @property
    def client(self) -> zeep.Client:
        if self._client is None:
            self._client = self.service.client(self.username, self.password)
        return self._client

    def start_worker(self, sink: SmtpSink, name: str, **overrides: str) -> WorkerProcess:
        env = {
            "SOAP_SERVICE_SMTP_RELAY": f"127.0.0.1:{sink.port}",
            "SOAP_SERVICE_SMTP_CA_FILE": str(self.tls.ca_cert),
            "SOAP_SERVICE_SMTP_TIMEOUT": "10",
            "SOAP_SERVICE_LEASE_SECONDS": str(LEASE_SECONDS),
            "SOAP_SERVICE_RETRY_MIN_SECONDS": "1",
            "SOAP_SERVICE_RETRY_MAX_SECONDS": "2",
            "SOAP_SERVICE_WORKER_POLL_MS": "50",
        }
        env.update({f"SOAP_SERVICE_{key}": value for key, value in overrides.items()})
        worker = self.service.worker(name, **env)
        self.workers.append(worker)
        return worker.start()

    def one_attempt_each(self, sink: SmtpSink, addresses: tuple[str, ...]) -> tuple[str, list[Any]]:
        """Send to `addresses`, start a worker that retries only after an hour (so the
        first attempt stays the last), and wait until each recipient had it: the message
        id and the recipients' states."""
        message_id = self.send(addresses)
        self.start_worker(sink, "worker", RETRY_MIN_SECONDS="3600", RETRY_MAX_SECONDS="3600")
        recipients = self.wait_for_states(
            message_id, lambda rs: all(r.Attempts >= 1 for r in rs), "one attempt each"
        )
        return message_id, recipients

    def envelope(self, reference: str, recipients: tuple[str, ...]) -> bytes:
        return envelope(
            send_message_xml(reference, recipients=recipients),
            security_header(self.username, self.password),
        )

    def send(self, recipients: tuple[str, ...], reference: str | None = None) -> str:
        """SendMessage as a raw envelope (faster than zeep); the service's message id."""
        body = self.envelope(reference or new_reference(), recipients)
        return message_id_of(self.service.post(body))

    def recipients(self, message_id: str) -> list[Any]:
        return list(self.client.service.GetStatus(MessageId=message_id).Recipients.Recipient)

    def wait_for_states(
        self,
        message_id: str,
        done: Callable[[list[Any]], bool],
        what: str,
        *,
        timeout: float = 30.0,
    ) -> list[Any]:
        last: list[Any] = []

        def check() -> list[Any] | None:
            last[:] = self.recipients(message_id)
            return list(last) if done(last) else None

        return wait_until(check, what, timeout=timeout, why=lambda: self.describe(last))

    def wait_all(self, message_id: str, state: str, *, timeout: float = 30.0) -> list[Any]:
        return self.wait_for_states(
            message_id,
            lambda rs: all(r.State == state for r in rs),
            f"every recipient of {message_id} {state}",
            timeout=timeout,
        )

    def describe(self, recipients: list[Any]) -> str:
        states = "\n".join(
            f"  {r.Address}: {r.State}, {r.Attempts} attempt(s), {r.LastError}" for r in recipients
        )
        logs = "\n".join(
            f"--- {worker.name} (running: {worker.is_running()})\n{worker.log_text()[-3000:]}"
            for worker in self.workers
        )
        return f"recipients:\n{states}\n{logs}"

    def journal(self, message_id: str, position: int) -> list[tuple[str, str | None]]:
        """(kind, detail) of one recipient's journal events, oldest first."""
        engine = create_engine(self.service.database_url)
        try:
            with engine.connect() as connection:
                return [
                    (row.kind, row.detail)
                    for row in connection.execute(
                        select(EventRow.kind, EventRow.detail)
                        .join(RecipientRow, RecipientRow.id == EventRow.recipient_id)
                        .where(
                            RecipientRow.message_id == message_id,
                            RecipientRow.position == position,
                        )
                        .order_by(EventRow.id)
                    )
                ]
        finally:
            engine.dispose()

    def journal_kinds(self) -> dict[str, int]:
        """How many journal events of each kind the database holds."""
        engine = create_engine(self.service.database_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    select(EventRow.kind, func.count()).group_by(EventRow.kind)
                ).all()
        finally:
            engine.dispose()
        return {kind: count for kind, count in rows}

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self._client is not None:
            # An open keep-alive connection would hold up gunicorn's graceful stop.
            self._client.transport.session.close()
        self.service.stop()


def start_stack(folder: Path, database_url: str, tls: TlsFiles) -> Stack:
    service = ServiceProcess(
        data_dir=folder / "var", database_url=database_url, tls=tls, workers=1
    ).start()
    try:
        username, password = service.add_account()
    except BaseException:
        service.stop()
        raise
    return Stack(service=service, tls=tls, username=username, password=password)
