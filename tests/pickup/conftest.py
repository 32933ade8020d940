"""Fixtures for the pickup tests: the delivery tests' database with an account (`Env`), and
the WSGI application serving it on the env's clock."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from soap_service.container import Container
from soap_service.crypto import WrappedKey
from soap_service.delivery.worker import DeliveryWorker
from soap_service.domain.sealing import MessageCipher
from soap_service.persistence.tables import MessageRow, RecipientRow
from soap_service.settings import load_settings
from soap_service.web.app import WebApp
from tests.delivery.conftest import Env, env_factory, worker_for  # noqa: F401 (a fixture)
from tests.smtp_sink import SmtpSink
from tests.support import TlsFiles

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
    return container.wsgi_app()


@pytest.fixture
def sink(start_sink: Callable[..., SmtpSink]) -> SmtpSink:
    """A STARTTLS SMTP server receiving what the worker sends."""
    return start_sink()


@pytest.fixture
def worker(env: Env, sink: SmtpSink, tls: TlsFiles, tmp_path: Path) -> DeliveryWorker:
    """A delivery worker sending to `sink` (notifications, account mails)."""
    return worker_for(env, sink, tmp_path / "worker", ca=tls.ca_cert)


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
        self.header_list = headers
        self.headers = {name.lower(): value for name, value in headers}
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    @property
    def cookies(self) -> list[str]:
        return [value for name, value in self.header_list if name.lower() == "set-cookie"]

    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.text)
        assert found, self.text
        return found[1]


def get(
    app: WebApp,
    path: str,
    *,
    method: str = "GET",
    body: bytes = b"",
    content_type: str = "",
    **headers: str,
) -> Response:
    path, _, query = path.partition("?")
    environ: dict[str, Any] = {
        # What every WSGI server gives (gunicorn here, behind the TLS it terminates).
        "wsgi.url_scheme": "https",
        "wsgi.errors": io.StringIO(),
        "SERVER_NAME": "pickup.example.ch",
        "SERVER_PORT": "443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SCRIPT_NAME": "",
        "REMOTE_ADDR": "192.0.2.10",
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **{f"HTTP_{name.upper()}": value for name, value in headers.items()},
    }
    captured: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured[:] = [status, headers]

    body = b"".join(app(environ, start_response))
    return Response(captured[0], captured[1], body)


class Browser:
    """A WSGI client that keeps cookies as a browser does (by name; deletes on Max-Age=0)."""

    def __init__(self, app: WebApp) -> None:
        self.app = app
        self.cookies: dict[str, str] = {}

    def _header(self) -> dict[str, str]:
        jar = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        return {"cookie": jar} if jar else {}

    def _keep(self, response: Response) -> Response:
        for cookie in response.cookies:
            name, _, rest = cookie.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in cookie:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response

    def get(self, path: str, **headers: str) -> Response:
        return self._keep(get(self.app, path, **self._header(), **headers))

    def post(self, path: str, fields: dict[str, str], **headers: str) -> Response:
        return self._keep(
            get(
                self.app,
                path,
                method="POST",
                body=urlencode(fields).encode(),
                content_type="application/x-www-form-urlencoded",
                **self._header(),
                **headers,
            )
        )
