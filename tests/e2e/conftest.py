"""End-to-end fixtures: accounts and clients on the module's running service."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import zeep

from tests.support import ServiceProcess

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
