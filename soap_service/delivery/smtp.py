"""SMTP out: STARTTLS required and the certificate verified, one connection reused for
several mails, each recipient's answer kept apart.

A server that offers no STARTTLS, or shows a certificate that does not verify, gets
nothing: not even the envelope. Only hosts an operator names in the insecure-hosts
setting may be spoken to without verified TLS.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from soap_service.delivery.addresses import smtp_address
from soap_service.domain.delivery import Outcome, OutcomeKind
from soap_service.settings import SmtpSettings


class TransportError(Exception):
    """Talking to the server failed before a mail could be handed over: every mail still
    waiting for this connection gets the same temporary outcome."""


@dataclass(frozen=True)
class Route:
    host: str
    port: int


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    if settings.ca_file:
        context.load_default_certs()  # the extra CA comes on top of the system's
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.client_cert_file and settings.client_key_file:
        context.load_cert_chain(settings.client_cert_file, settings.client_key_file)
    return context


class SmtpSession:
    """One open connection to one server."""

    def __init__(self, route: Route, settings: SmtpSettings, context: ssl.SSLContext) -> None:
        self.route = route
        self._settings = settings
        self._context = context
        self._client: smtplib.SMTP | None = None

    def open(self) -> None:
        insecure = self.route.host.lower() in self._settings.insecure_hosts
        try:
            # Given the host here (not to connect()), smtplib checks the certificate
            # against this name in STARTTLS.
            client = smtplib.SMTP(
                self.route.host,
                self.route.port,
                local_hostname=self._settings.hostname,
                timeout=self._settings.timeout_seconds,
            )
            # Without TCP_NODELAY each mail waits ~40 ms for a delayed ACK (Nagle).
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.ehlo(self._settings.hostname)
            if client.has_extn("starttls"):
                client.starttls(context=_unverified() if insecure else self._context)
                client.ehlo(self._settings.hostname)
            elif not insecure:
                client.close()
                raise TransportError(f"{self.route.host} does not offer STARTTLS; nothing sent")
            if self._settings.username and self._settings.password:
                client.login(self._settings.username, self._settings.password)
        except ssl.SSLCertVerificationError as exc:
            raise TransportError(
                f"{self.route.host} showed a certificate that does not verify "
                f"({exc.verify_message}); nothing sent"
            ) from exc
        except (OSError, ValueError, smtplib.SMTPException) as exc:
            raise TransportError(f"{self.route.host}: {_describe(exc)}") from exc
        self._client = client

    def send(self, mail_from: str, recipient: str, data: bytes) -> Outcome:
        """Hand over one mail for one recipient; the outcome for that recipient.

        Raises TransportError when the connection itself is lost: the caller opens a new
        one for the mails that remain.
        """
        client = self._client
        assert client is not None, "open() first"
        address = smtp_address(recipient)
        options = ["SMTPUTF8"] if not address.isascii() else []
        if options and not client.has_extn("smtputf8"):
            return Outcome(
                kind=OutcomeKind.PERMANENT,
                detail=f"{self.route.host} does not accept international addresses",
            )
        try:
            client.sendmail(mail_from, [address], data, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = exc.recipients[address]
            return self._answered(code, reply)
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            return self._answered(exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPServerDisconnected as exc:
            self.close()
            raise TransportError(f"{self.route.host} dropped the connection: {exc}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise TransportError(f"{self.route.host}: {_describe(exc)}") from exc
        return Outcome(kind=OutcomeKind.ACCEPTED, detail=f"{self.route.host} accepted the mail")

    @property
    def is_open(self) -> bool:
        return self._client is not None

    def alive(self) -> bool:
        """Whether the server still answers on this connection (one NOOP)."""
        if self._client is None:
            return False
        try:
            return self._client.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            return False

    def _answered(self, code: int, reply: bytes | str) -> Outcome:
        if code == 421 or self._client is None or self._client.sock is None:
            # 421: the server is closing the connection (smtplib has closed it already).
            self.close()
        return _reply_outcome(code, reply)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()


@contextmanager
def session(route: Route, settings: SmtpSettings, context: ssl.SSLContext) -> Iterator[SmtpSession]:
    smtp = SmtpSession(route, settings, context)
    smtp.open()
    try:
        yield smtp
    finally:
        smtp.close()


def _unverified() -> ssl.SSLContext:
    """For a host the operator named as insecure: encrypted, but any certificate will do."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _reply_outcome(code: int, reply: bytes | str) -> Outcome:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    detail = f"{code} {' '.join(text.split())}"[:900]
    if 500 <= code < 600:
        return Outcome(kind=OutcomeKind.PERMANENT, detail=detail)
    return Outcome(kind=OutcomeKind.TEMPORARY, detail=detail)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {exc.smtp_error!r}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"[:300]
