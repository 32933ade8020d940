"""SMTP out: STARTTLS required and the certificate verified, one connection reused for
several mails, each recipient's answer kept apart; MAIL, RCPT and DATA in one write to a
server that offers PIPELINING (RFC 2920), as Postfix and most relays do: a mail then
waits for two round trips instead of four.

A server that offers no STARTTLS, or shows a certificate that does not verify, gets
nothing: not even the envelope. Only hosts an operator names in the insecure-hosts
setting may be spoken to without verified TLS. The relay's login and client certificate
go to the relay only, never to a recipient's own mail server, and never without TLS.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from soap_service.delivery.addresses import smtp_address
from soap_service.domain.delivery import Outcome, OutcomeKind
from soap_service.domain.organisations import Gateway, TlsPolicy
from soap_service.errors import DeliveryError
from soap_service.settings import SmtpSettings


class TransportError(DeliveryError):
    """The connection failed or was lost before the mail was handed over: the mail is
    deferred, and the next one opens a new connection."""


class DestinationBusy(TransportError):
    """The server will take nothing now (421, or it refused our sender): every mail still
    waiting for it is deferred, as Postfix does, instead of knocking again for each."""


# Answers to MAIL FROM about this one mail, not about us as sender: 552 (larger than the
# server takes, from SIZE) and 555 (a parameter, such as SIZE or SMTPUTF8, not accepted).
MAIL_REPLIES_ABOUT_THIS_MAIL = frozenset({552, 555})


@dataclass(frozen=True)
class Route:
    host: str
    port: int
    relay: bool = False  # the configured relay: the only server that gets our credentials
    # An organisation's gateway: TLS as its policy asks and never less, whatever the
    # insecure-hosts setting says.
    gateway: Gateway | None = None


@dataclass(frozen=True)
class TlsContexts:
    """Built once per worker: the relay's carry the client certificate, if configured."""

    relay: ssl.SSLContext
    other: ssl.SSLContext
    relay_unverified: ssl.SSLContext  # for hosts named in insecure-hosts
    other_unverified: ssl.SSLContext
    gateways: GatewayContexts

    @classmethod
    def from_settings(cls, settings: SmtpSettings) -> TlsContexts:
        return cls(
            relay=_context(settings, client_certificate=True, verify=True),
            other=_context(settings, client_certificate=False, verify=True),
            relay_unverified=_context(settings, client_certificate=True, verify=False),
            other_unverified=_context(settings, client_certificate=False, verify=False),
            gateways=GatewayContexts(
                settings.gateway_client_cert_file, settings.gateway_client_key_file
            ),
        )

    def for_route(self, route: Route, *, insecure: bool) -> ssl.SSLContext:
        if route.gateway is not None:
            return self.gateways.context(route.host, route.gateway)
        if route.relay:
            return self.relay_unverified if insecure else self.relay
        return self.other_unverified if insecure else self.other


class GatewayContexts:
    """TLS for organisations' gateways: the certificate verified against the system's
    roots and the organisation's own CA, its name checked; for mutual TLS also the
    service's client certificate, which no other server ever sees. One context per
    policy and CA, made when first needed."""

    def __init__(self, cert_file: Path | None, key_file: Path | None) -> None:
        self._client = (cert_file, key_file) if cert_file and key_file else None
        self._contexts: dict[tuple[TlsPolicy, bytes | None], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def context(self, host: str, gateway: Gateway) -> ssl.SSLContext:
        key = (gateway.tls, gateway.ca.sha256 if gateway.ca else None)
        with self._lock:
            context = self._contexts.get(key)
            if context is None:
                context = self._contexts[key] = self._make(host, gateway)
            return context

    def _make(self, host: str, gateway: Gateway) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if gateway.ca is not None:
            context.load_verify_locations(cadata=gateway.ca.pem)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if gateway.tls is TlsPolicy.MUTUAL:
            if self._client is None:
                raise TransportError(
                    f"{host} asks for mutual TLS and the service has no client certificate "
                    "(SOAP_SERVICE_GATEWAY_CLIENT_CERT_FILE); nothing sent"
                )
            try:
                context.load_cert_chain(*self._client)
            except (OSError, ssl.SSLError) as exc:
                raise TransportError(
                    f"the service's gateway client certificate is unusable ({exc}); nothing sent"
                ) from exc
        return context


def _context(settings: SmtpSettings, *, client_certificate: bool, verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    if settings.ca_file:
        context.load_default_certs()  # the extra CA comes on top of the system's
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:  # encrypted, but any certificate will do
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_certificate and settings.client_cert_file and settings.client_key_file:
        context.load_cert_chain(settings.client_cert_file, settings.client_key_file)
    return context


class SmtpSession:
    """One open connection to one server."""

    def __init__(self, route: Route, settings: SmtpSettings, contexts: TlsContexts) -> None:
        self.route = route
        self._settings = settings
        self._contexts = contexts
        self._client: smtplib.SMTP | None = None

    def open(self) -> None:
        settings = self._settings
        insecure = self.route.gateway is None and self.route.host.lower() in settings.insecure_hosts
        client = None
        try:
            # Given the host here (not to connect()), smtplib checks the certificate
            # against this name in STARTTLS.
            client = smtplib.SMTP(
                self.route.host,
                self.route.port,
                local_hostname=settings.hostname,
                timeout=settings.timeout_seconds,
            )
            # Without TCP_NODELAY each mail waits ~40 ms for a delayed ACK (Nagle).
            assert client.sock is not None, "SMTP(host) connects or raises"
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.ehlo(settings.hostname)
            encrypted = client.has_extn("starttls")
            if encrypted:
                client.starttls(context=self._contexts.for_route(self.route, insecure=insecure))
                code, reply = client.ehlo(settings.hostname)
                if code != 250:
                    # Postfix answers 421 here to a client certificate it does not accept.
                    raise TransportError(
                        f"{self.route.host} refused the connection after STARTTLS: "
                        f"{_reply(code, reply)}; nothing sent"
                    )
            elif not insecure:
                raise TransportError(f"{self.route.host} does not offer STARTTLS; nothing sent")
            if self.route.relay and settings.username and settings.password:
                if not encrypted:
                    raise TransportError(
                        f"{self.route.host} offers no STARTTLS: the relay password is not sent"
                    )
                client.login(settings.username, settings.password)
        except TransportError:
            _close(client)
            raise
        except ssl.SSLCertVerificationError as exc:
            _close(client)
            raise TransportError(
                f"{self.route.host} showed a certificate that does not verify "
                f"({exc.verify_message}); nothing sent"
            ) from exc
        except (OSError, ValueError, smtplib.SMTPException) as exc:
            _close(client)
            raise TransportError(f"{self.route.host}: {_describe(exc)}") from exc
        self._client = client

    def send(self, mail_from: str, recipient: str, data: bytes) -> Outcome:
        """Hand over one mail for one recipient; the outcome for that recipient.

        Raises TransportError when the connection is lost (the caller opens a new one for
        the next mail) and DestinationBusy when the server takes nothing now.

        The commands are smtplib's, given directly: sendmail() would parse both addresses
        again and dot-stuff with a regular expression, for every mail, on the path where
        the server waits for us.
        """
        client = self._client
        assert client is not None, "open() first"
        address = smtp_address(recipient)
        options = ""
        if not address.isascii():
            if not client.has_extn("smtputf8"):
                return Outcome(
                    kind=OutcomeKind.PERMANENT,
                    detail=f"{self.route.host} does not accept international addresses",
                )
            options += " SMTPUTF8"
        client.command_encoding = "utf-8" if options else "ascii"
        if client.has_extn("size"):
            options += f" SIZE={len(data)}"
        mail, rcpt = f"MAIL FROM:<{mail_from}>{options}", f"RCPT TO:<{address}>"
        if any(char in command for command in (mail, rcpt) for char in "\r\n"):
            # As smtplib's putcmd, but before anything is sent: no command smuggled in.
            raise ValueError("command and arguments contain prohibited newline characters")
        try:
            if client.has_extn("pipelining"):
                client.send(f"{mail}\r\n{rcpt}\r\nDATA\r\n")
                replies = _replies(client, 3)
            else:
                replies = _one_at_a_time(client, mail, rcpt)
            return self._complete(client, replies, data)
        except smtplib.SMTPServerDisconnected as exc:
            self.close()
            raise TransportError(f"{self.route.host} dropped the connection: {exc}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise TransportError(f"{self.route.host}: {_describe(exc)}") from exc

    def _complete(self, client: smtplib.SMTP, replies: list[Reply], data: bytes) -> Outcome:
        """The mail's outcome from the replies to its MAIL, RCPT and DATA: all three when
        pipelined, up to the first refusal when not, and never past a 421 (the server
        says nothing more). The content goes once DATA is taken."""
        (mail_code, mail_reply), *rest = replies
        envelope_accepted = mail_code == 250 and bool(rest) and rest[0][0] in (250, 251)
        if len(rest) == 2 and rest[1][0] == 354:
            # DATA taken although the envelope was not (only pipelined): a lone dot ends
            # it, an empty mail that goes nowhere (RFC 2920 3.1).
            client.send(dot_stuffed(data) if envelope_accepted else b".\r\n")
            rest[1] = client.getreply()
            if envelope_accepted and rest[1][0] == 250:
                return Outcome(kind=OutcomeKind.ACCEPTED, detail=self._accepted())
        if mail_code != 250:
            if mail_code not in MAIL_REPLIES_ABOUT_THIS_MAIL:
                # About us, not this mail: permanent for nobody, temporary for all.
                self.close()
                raise DestinationBusy(
                    f"{self.route.host} refused the sender: {_reply(mail_code, mail_reply)}"
                )
            code, reply = mail_code, mail_reply  # too large, or a parameter refused
        else:
            # The recipient's refusal, or DATA's, or the answer to the content.
            code, reply = rest[1] if envelope_accepted else rest[0]
        if code != 421:
            self._reset()  # this mail only: the connection serves the next
        return self._answered(code, reply)

    def _accepted(self) -> str:
        """The journal's words for a 250: a gateway received the message itself."""
        if self.route.gateway is not None:
            return f"the gateway {self.route.host} accepted the message"
        return f"{self.route.host} accepted the mail"

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

    def _reset(self) -> None:
        """End a refused transaction so that the connection serves the next mail; a
        connection that fails at this is closed (the next mail opens a new one)."""
        assert self._client is not None
        try:
            code, _ = self._client.rset()
        except (OSError, smtplib.SMTPException):
            code = 0
        if code != 250:  # the server is leaving (421) or confused: start afresh
            self.close()

    def _answered(self, code: int, reply: bytes | str) -> Outcome:
        if code == 421:
            # The server is closing the connection (smtplib has closed it already).
            self.close()
            raise DestinationBusy(f"{self.route.host}: {_reply(code, reply)}")
        kind = OutcomeKind.PERMANENT if 500 <= code < 600 else OutcomeKind.TEMPORARY
        return Outcome(kind=kind, detail=_reply(code, reply))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()


Reply = tuple[int, bytes]


def _one_at_a_time(client: smtplib.SMTP, mail: str, rcpt: str) -> list[Reply]:
    """The replies to MAIL, RCPT and DATA, each command sent once the one before it was
    accepted."""
    replies = [client.docmd(mail)]
    if replies[-1][0] == 250:
        replies.append(client.docmd(rcpt))
        if replies[-1][0] in (250, 251):
            replies.append(client.docmd("DATA"))
    return replies


def _replies(client: smtplib.SMTP, count: int) -> list[Reply]:
    """The replies to `count` pipelined commands, in order; fewer after a 421."""
    replies: list[Reply] = []
    while len(replies) < count and (not replies or replies[-1][0] != 421):
        replies.append(client.getreply())
    return replies


def dot_stuffed(data: bytes) -> bytes:
    """The DATA section for a message with CRLF line ends: a line that starts with a dot
    gets another (RFC 5321 4.5.2), and the closing dot follows."""
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\n.", b"\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _close(client: smtplib.SMTP | None) -> None:
    if client is not None:
        with contextlib.suppress(OSError):
            client.close()


def _reply(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return clean(f"{code} {text}")


def clean(text: str) -> str:
    """What a server said, fit for the journal and GetStatus: one line, no control
    characters (a NUL from a hostile server would make PostgreSQL refuse the record)."""
    printable = "".join(" " if unicodedata.category(char)[0] == "C" else char for char in text)
    return " ".join(printable.split())[:900]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return clean(f"{type(exc).__name__}: {exc}")[:300]
