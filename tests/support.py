"""Helpers for tests that run the real service: a gunicorn HTTPS process, its CLI, clients."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
import zeep
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

REPO = Path(__file__).resolve().parents[1]
TNS = "urn:soap-service:messaging:v1"
SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


class _ProcessGroup:
    """What a `soap-service` subprocess in its own process group has in common: started
    with its output in `log_path`, stopped (or killed) with everything it forked."""

    process: subprocess.Popen[bytes] | None

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def _spawn(self, command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "soap_service", command],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.process

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the whole process group and wait; SIGKILL it if it outlasts 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL the whole process group: no clean-up of any kind."""
        self.stop(signal.SIGKILL)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class ServiceProcess(_ProcessGroup):
    """A `soap-service serve` process on a free port, with its own data folder."""

    data_dir: Path
    database_url: str
    tls: TlsFiles
    workers: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/soap/v1"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOAP_SERVICE_")}
        env.update(
            {
                "SOAP_SERVICE_DATA_DIR": str(self.data_dir),
                "SOAP_SERVICE_DATABASE_URL": self.database_url,
                "SOAP_SERVICE_BIND": f"127.0.0.1:{self.port}",
                "SOAP_SERVICE_PUBLIC_URL": self.url,
                "SOAP_SERVICE_TLS_CERT_FILE": str(self.tls.server_cert),
                "SOAP_SERVICE_TLS_KEY_FILE": str(self.tls.server_key),
                "SOAP_SERVICE_WORKERS": str(self.workers),
            }
        )
        env.update(self.extra_env)
        return env

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "soap_service", *args],
            env=self.env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    def add_account(self, name: str | None = None) -> tuple[str, str]:
        """An account that accepts PasswordText and PasswordDigest."""
        name = name or f"sender-{uuid.uuid4().hex[:8]}"
        output = self.cli("account", "add", name, "--allow-digest").stdout
        password = re.search(r"password: (\S+)", output)
        assert password, output
        return name, password.group(1)

    def start(self) -> ServiceProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._spawn("serve", self.env())
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log_text()}")
            with contextlib.suppress(requests.RequestException):
                if self.session().get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"server did not become healthy:\n{self.log_text()}")

    def worker(self, name: str = "worker", **extra_env: str) -> WorkerProcess:
        """A delivery worker (not started yet) with this service's environment, its
        database and master keys, plus `extra_env` (e.g. SOAP_SERVICE_SMTP_RELAY)."""
        return WorkerProcess(service=self, name=name, extra_env=dict(extra_env))

    def session(self) -> requests.Session:
        session = requests.Session()
        session.verify = str(self.tls.ca_cert)
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`
        return session

    def client(self, username: str, password: str, *, digest: bool = False) -> zeep.Client:
        transport = Transport(session=self.session(), timeout=120, operation_timeout=120)
        return zeep.Client(
            f"{self.url}?wsdl",
            transport=transport,
            wsse=UsernameToken(username, password, use_digest=digest),
        )

    def post(
        self, body: bytes, *, content_type: str = "text/xml; charset=utf-8", **headers: str
    ) -> requests.Response:
        return self.session().post(
            self.url,
            data=body,
            headers={"Content-Type": content_type, "SOAPAction": '""', **headers},
            timeout=120,
        )


@dataclass
class WorkerProcess(_ProcessGroup):
    """A `soap-service worker` process in its own process group (SIGKILL it with `kill()`),
    logging to `<data_dir>/<name>.log`."""

    service: ServiceProcess
    name: str = "worker"
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    STARTED = "delivery worker"

    @property
    def log_path(self) -> Path:
        return self.service.data_dir / f"{self.name}.log"

    def env(self) -> dict[str, str]:
        env = self.service.env()
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        """Start the worker and wait until it has logged that it runs."""
        assert not self.is_running(), f"{self.name} runs already"
        self.service.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        process = self._spawn("worker", self.env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log_text()}")
            if re.search(rf"{self.STARTED} \S+ started", self.log_text()[offset:]):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"worker {self.name} did not start:\n{self.log_text()}")


@dataclass
class SmtpChannelProcess(_ProcessGroup):
    """A `soap-service smtp` process beside `service` (its database, keys and TLS
    certificate), on a free port, logging to `<data_dir>/<name>.log`."""

    service: ServiceProcess
    name: str = "smtp"
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    SUFFIX = ".secure.test"

    @property
    def log_path(self) -> Path:
        return self.service.data_dir / f"{self.name}.log"

    def env(self) -> dict[str, str]:
        env = self.service.env()
        env.update(
            {
                "SOAP_SERVICE_SMTP_BIND": f"127.0.0.1:{self.port}",
                "SOAP_SERVICE_SMTP_ADDRESS_SUFFIX": self.SUFFIX,
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60.0) -> SmtpChannelProcess:
        self.service.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        process = self._spawn("smtp", self.env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"SMTP channel exited:\n{self.log_text()}")
            if "SMTP channel listening" in self.log_text()[offset:]:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"SMTP channel did not start:\n{self.log_text()}")

    def connect(self, *, login: tuple[str, str] | None = None, timeout: float = 60) -> smtplib.SMTP:
        """An SMTP client after STARTTLS (verifying the service's certificate), logged in
        with `login` if given."""
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=timeout)
        client.starttls(context=ssl.create_default_context(cafile=str(self.service.tls.ca_cert)))
        client.ehlo()
        if login is not None:
            client.login(*login)
        return client


def count_messages(database_url: str) -> int:
    from sqlalchemy import create_engine, func, select

    from soap_service.persistence.tables import MessageRow

    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(MessageRow)).scalar_one()
    finally:
        engine.dispose()


def security_header(username: str, password: str) -> str:
    wsse = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
    return (
        f'<wsse:Security xmlns:wsse="{wsse}"><wsse:UsernameToken>'
        f"<wsse:Username>{username}</wsse:Username>"
        f"<wsse:Password>{password}</wsse:Password>"
        "</wsse:UsernameToken></wsse:Security>"
    )


def digest_security_header(
    username: str, password: str, *, nonce: bytes | None = None, created: str | None = None
) -> str:
    """A PasswordDigest UsernameToken, by default with a fresh nonce and the current time."""
    import base64
    from datetime import UTC, datetime

    from soap_service.crypto import username_token_digest

    wsse = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
    wsu = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
    profile = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    nonce = nonce or uuid.uuid4().bytes
    created = created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = username_token_digest(nonce, created, password)
    return (
        f'<wsse:Security xmlns:wsse="{wsse}" xmlns:wsu="{wsu}"><wsse:UsernameToken>'
        f"<wsse:Username>{username}</wsse:Username>"
        f'<wsse:Password Type="{profile}#PasswordDigest">{digest}</wsse:Password>'
        f"<wsse:Nonce>{base64.b64encode(nonce).decode()}</wsse:Nonce>"
        f"<wsu:Created>{created}</wsu:Created></wsse:UsernameToken></wsse:Security>"
    )


def envelope(body: str, header: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP11_ENV}" '
        f'xmlns:m="{TNS}"><soap:Header>{header}</soap:Header><soap:Body>{body}</soap:Body>'
        "</soap:Envelope>"
    ).encode()


def send_message_xml(
    reference: str,
    *,
    recipients: tuple[str, ...] = ("anna@example.ch",),
    message_type: str = "confidential",
    subject: str = "Payslip",
    attachments: tuple[tuple[str, str, str], ...] = (),
    extra: str = "",
) -> str:
    recipient_xml = "".join(
        f"<m:Recipient><m:Address>{address}</m:Address></m:Recipient>" for address in recipients
    )
    attachment_xml = "".join(
        f"<m:Attachment><m:FileName>{name}</m:FileName><m:ContentType>{ctype}</m:ContentType>"
        f"<m:Content>{content}</m:Content></m:Attachment>"
        for name, ctype, content in attachments
    )
    return (
        f"<m:SendMessage><m:Message><m:Reference>{reference}</m:Reference>"
        f"<m:Type>{message_type}</m:Type><m:Recipients>{recipient_xml}</m:Recipients>"
        f"<m:Subject>{subject}</m:Subject><m:TextBody>Your payslip is attached.</m:TextBody>"
        + (f"<m:Attachments>{attachment_xml}</m:Attachments>" if attachments else "")
        + f"{extra}</m:Message></m:SendMessage>"
    )


def fault_of(response: requests.Response) -> tuple[str, str]:
    """(faultcode without prefix, faultstring) of a SOAP fault response."""
    from lxml import etree

    assert response.status_code == 500, (response.status_code, response.text[:500])
    root = etree.fromstring(response.content)
    code = root.findtext(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault/faultcode")
    text = root.findtext(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault/faultstring")
    assert code is not None and text is not None, response.text
    return code.split(":", 1)[-1], text


def stored_attachments(service: ServiceProcess, message_id: str) -> list[tuple[str, bytes]]:
    """(file name, content) of a stored message's attachments, decrypted with the service's
    master keys: what a client's bytes became in storage."""
    from sqlalchemy import create_engine, select

    from soap_service import crypto
    from soap_service.domain import sealing
    from soap_service.domain.sealing import MessageCipher
    from soap_service.persistence.tables import AttachmentRow, MessageRow

    engine = create_engine(service.database_url)
    try:
        with engine.connect() as connection:
            message = connection.execute(
                select(MessageRow).where(MessageRow.id == message_id)
            ).one()
            rows = connection.execute(
                select(AttachmentRow)
                .where(AttachmentRow.message_id == message_id)
                .order_by(AttachmentRow.position)
            ).all()
    finally:
        engine.dispose()
    keyring = crypto.Keyring.load(service.data_dir / "keys" / "master-keys.json")
    cipher = MessageCipher.unwrap(
        keyring, crypto.WrappedKey(key_id=message.key_id, wrapped=message.wrapped_key), message_id
    )
    return [
        (
            cipher.open(sealing.attachment_name(row.position), row.sealed_filename).decode(),
            cipher.open(sealing.attachment_content(row.position), row.sealed_content),
        )
        for row in rows
    ]


def smime_verify(
    mail: bytes, certificate: Path, folder: Path
) -> subprocess.CompletedProcess[bytes]:
    """OpenSSL's own check of an S/MIME-signed mail against `certificate` (a trust anchor):
    returncode 0 and "Verification successful" on stderr when it holds; stdout is the
    signed part."""
    path = folder / f"smime-{uuid.uuid4().hex[:8]}.eml"
    path.write_bytes(mail)
    return subprocess.run(
        ["openssl", "smime", "-verify", "-in", str(path), "-CAfile", str(certificate)],
        capture_output=True,
        timeout=30,
    )
