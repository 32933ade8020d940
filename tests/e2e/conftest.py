"""End-to-end fixtures: accounts and clients on the module's running service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zeep

from tests.conftest import PostgresDatabases, database_url_for
from tests.e2e.stack import Stack, start_stack
from tests.smtp_sink import SmtpSink
from tests.support import ServiceProcess, SmtpChannelProcess, TlsFiles

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Sender:
    username: str
    password: str
    client: zeep.Client


@pytest.fixture(scope="module")
def sender(service: ServiceProcess) -> Sender:
    username, password = service.add_account()
    return Sender(username, password, service.client(username, password))


@pytest.fixture(scope="module")
def other_sender(service: ServiceProcess) -> Sender:
    username, password = service.add_account()
    return Sender(username, password, service.client(username, password))


@pytest.fixture
def make_stack(
    tmp_path: Path, tls: TlsFiles, postgres: PostgresDatabases
) -> Iterator[Callable[[str], Stack]]:
    """Start a SOAP server on a fresh database of the given backend; the server and every
    worker started through the stack are stopped at the end."""
    stacks: list[Stack] = []

    def make(backend: str) -> Stack:
        folder = tmp_path / f"{backend}-{len(stacks)}"
        folder.mkdir()
        stack = start_stack(folder, database_url_for(backend, folder, postgres), tls)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture
def delivering(
    make_stack: Callable[[str], Stack], start_sink: Callable[..., SmtpSink]
) -> tuple[Stack, SmtpSink]:
    """A SOAP server on SQLite with one delivery worker sending to a STARTTLS sink."""
    stack = make_stack("sqlite")
    sink = start_sink()
    stack.start_worker(sink, "worker")
    return stack, sink


@pytest.fixture
def smtp_channel(delivering: tuple[Stack, SmtpSink]) -> Iterator[SmtpChannelProcess]:
    """The SMTP channel beside the `delivering` stack's server."""
    stack, _ = delivering
    process = SmtpChannelProcess(service=stack.service).start()
    yield process
    process.stop()
