"""A real SMTP server for tests (aiosmtpd), with STARTTLS from a test CA and a script of
answers: it keeps what it actually received, and whether TLS was on when it did."""

from __future__ import annotations

import asyncio
import email
import email.policy
import functools
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from soap_service.devmail import StoppingController
from tests.support import free_port


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    tls: bool

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]

    @functools.cached_property
    def message_id(self) -> str:
        # Read once, from the headers alone: tests poll the Message-IDs of thousands of
        # mails while the sink (a thread of the same process) receives more, and parsing
        # each whole mail at each poll took the CPU the sink and the workers needed.
        headers = BytesHeaderParser(policy=email.policy.default).parsebytes(self.data)
        return str(headers["Message-ID"])


@dataclass
class Script:
    """Answers to give, in order; an empty queue answers 250."""

    mail_replies: deque[str] = field(default_factory=deque)
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> reply, always
    data_replies: deque[str] = field(default_factory=deque)
    # A server that takes DATA although it refused the recipient (RFC 2920 3.1 warns of it).
    data_after_refused_rcpt: bool = False
    drop_after_data: int = 0  # drop the connection instead of answering this many DATAs
    data_delay: float = 0.0  # seconds to wait before answering DATA
    mail_delay: float = 0.0  # seconds to wait before answering MAIL (a busy server)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd leaves to this hook
        if self._sink.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        sink = self._sink
        sink.events.append(("MAIL", session.ssl is not None))
        sink.mail_options.append(list(options))
        sink.mail_sessions.append(session)
        if sink.on_mail is not None:
            sink.on_mail(len(sink.mail_sessions))
        script = sink.script
        if script.mail_delay:
            await asyncio.sleep(script.mail_delay)
        if script.mail_replies:
            return script.mail_replies.popleft()
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self._sink.script.rcpt_replies.get(address)
        if reply:
            if self._sink.script.data_after_refused_rcpt:
                envelope.rcpt_tos.append(address)
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        script = self._sink.script
        if script.data_delay:
            await asyncio.sleep(script.data_delay)
        if script.drop_after_data:
            script.drop_after_data -= 1
            self._sink.dropped.append(envelope.original_content or envelope.content)
            server.transport.abort()  # the line goes dead after the whole mail was sent
            return "421 dropping"
        reply = script.data_replies.popleft() if script.data_replies else "250 OK"
        if reply.startswith("250"):
            self._sink.received.append(
                ReceivedMail(
                    mail_from=envelope.mail_from,
                    recipients=tuple(envelope.rcpt_tos),
                    data=envelope.original_content or envelope.content,
                    tls=session.ssl is not None,
                )
            )
        return reply


class SmtpSink:
    def __init__(
        self,
        *,
        cert_chain: Path | None,
        key: Path | None,
        starttls: bool = True,
        client_ca: Path | None = None,
        pipelining: bool = False,
        **server_options: Any,
    ) -> None:
        """`client_ca`: require a client certificate from this CA. `pipelining`: offer
        PIPELINING (RFC 2920; aiosmtpd reads commands in order, so it is true). The other
        `server_options` go to aiosmtpd's SMTP (e.g. authenticator=..., auth_required=True)."""
        self.port = free_port()
        self.pipelining = pipelining
        self.script = Script()
        self.received: list[ReceivedMail] = []
        self.events: list[tuple[str, bool]] = []  # (command, TLS on) as the server saw them
        self.mail_options: list[list[str]] = []  # the parameters of each MAIL FROM
        # The SMTP session (one per TCP connection) each MAIL came on; kept alive, so that
        # their identities are not reused within a test.
        self.mail_sessions: list[Any] = []
        # What arrived before the sink dropped the connection instead of answering DATA.
        self.dropped: list[bytes] = []
        # Called (in the server's thread) with the number of the MAIL just received.
        self.on_mail: Callable[[int], None] | None = None
        kwargs: dict[str, Any] = {}
        if starttls:
            assert cert_chain and key
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert_chain, key)
            if client_ca:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(client_ca)
            kwargs = {"tls_context": context, "require_starttls": True}
        self._controller = StoppingController(
            _Handler(self), hostname="127.0.0.1", port=self.port, **kwargs, **server_options
        )

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def message_ids(self) -> list[str]:
        return [mail.message_id for mail in self.received]

    def mail_connections(self) -> int:
        return len({id(session) for session in self.mail_sessions})
