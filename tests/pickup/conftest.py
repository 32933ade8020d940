"""Fixtures for the pickup tests: the delivery tests' database with an account (`Env`), and
the WSGI application serving it on the env's clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from soap_service.container import Container
from soap_service.crypto import WrappedKey
from soap_service.domain.sealing import MessageCipher
from soap_service.persistence.tables import MessageRow, RecipientRow
from soap_service.settings import load_settings
from soap_service.soap.application import SoapEndpoint
from soap_service.web.app import WebApp
from tests.delivery.conftest import Env, env_factory  # noqa: F401 (a fixture)

PUBLIC_URL = "https://pickup.example.ch/soap/v1"


@pytest.fixture
def env(env_factory: Callable[..., Env], database_url: str) -> Env:  # noqa: F811
    """On SQLite and on PostgreSQL (`database_url` is parametrised in tests/conftest.py)."""
    return env_factory(database_url)


@pytest.fixture
def app(env: Env, tmp_path: Path) -> WebApp:
    settings = load_settings(
        {
            "SOAP_SERVICE_DATA_DIR": str(tmp_path),
            "SOAP_SERVICE_DATABASE_URL": env.database.url,
            "SOAP_SERVICE_PUBLIC_URL": PUBLIC_URL,
        }
    )
    container = Container(settings, database=env.database)
    container.now = env.clock  # the pages see the test's time
    return WebApp(container, SoapEndpoint(settings.public_url))


def token_for(env: Env, message_id: str, position: int = 1) -> str:
    """The recipient's pickup token, as the notification carries it."""
    messages, recipients = MessageRow.__table__, RecipientRow.__table__
    with env.database.engine.connect() as connection:
        row = connection.execute(messages.select().where(messages.c.id == message_id)).one()
        assert connection.execute(
            recipients.select().where(
                recipients.c.message_id == message_id, recipients.c.position == position
            )
        ).first()
    cipher = MessageCipher.unwrap(
        env.keyring, WrappedKey(key_id=row.key_id, wrapped=bytes(row.wrapped_key)), message_id
    )
    return cipher.pickup_token(position)


class Response:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = int(status.split()[0])
        self.headers = {name.lower(): value for name, value in headers}
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def get(app: WebApp, path: str, *, method: str = "GET", **headers: str) -> Response:
    path, _, query = path.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": None,
        **{f"HTTP_{name.upper()}": value for name, value in headers.items()},
    }
    captured: list[Any] = []
    body = b"".join(
        app(environ, lambda status, headers, exc_info=None: captured.extend([status, headers]))
    )
    return Response(captured[0], captured[1], body)
