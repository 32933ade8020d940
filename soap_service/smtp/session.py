"""The channel's handler of SMTP commands: AUTH, MAIL, RCPT and DATA.

Each recipient is checked when it is named (550 5.1.3 for a bad one, the others go on).
After DATA the mail becomes a draft and goes through the domain's one entry point
(MessageService.send) in a worker thread; 250 is answered only after the commit. The
Message-ID is the Reference, so an MTA that sends again after a lost 250 gets 250 and no
second message; a mail without one gets a Reference made from its bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from soap_service import crypto
from soap_service.domain.auth import Authenticator, PasswordType, UsernameToken
from soap_service.domain.messages import MessageService
from soap_service.domain.model import Account, MessageDraft, MessageLimits
from soap_service.domain.organisations import Organisation
from soap_service.domain.validation import normalise_address
from soap_service.errors import InvalidAddress, Unavailable, ValidationError
from soap_service.settings import SmtpChannelSettings
from soap_service.smtp import replies
from soap_service.smtp.mime import SubmittedMail, read_mail
from soap_service.smtp.recipients import secure_recipient

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long storing a mail may take before its client counts as gone (RFC 5321 4.5.3.2.6).
DATA_ANSWER_SECONDS = 600


@dataclass(frozen=True, kw_only=True)
class Submitter:
    """Who a session submits as: an account that logged in with AUTH, or an organisation's
    mail server by its client certificate (then only from the organisation's domains)."""

    account: Account
    organisation: Organisation | None = None

    def may_send_from(self, address: str) -> bool:
        return self.organisation is None or self.organisation.sends_from(address)


class SmtpServices(Protocol):
    """The domain entry points one submission uses (container.RequestScope)."""

    @property
    def authenticator(self) -> Authenticator: ...

    @property
    def messages(self) -> MessageService: ...

    def close(self) -> None: ...


class SubmissionHandler:
    def __init__(
        self,
        *,
        open_scope: Callable[[], SmtpServices],
        settings: SmtpChannelSettings,
        limits: MessageLimits,
        executor: Executor,
        login_executor: Executor,
        count: Callable[[str], None] = lambda reply: None,
    ) -> None:
        self._open_scope = open_scope
        self._count = count  # each submission's reply (metrics.py)
        self._settings = settings
        self._limits = limits
        # Logins have their own threads: password checks (a scrypt each, which anyone
        # can ask for) must not hold up the mails being stored.
        self._executor = executor
        self._login_executor = login_executor
        self.submissions_under_way = 0
        # Set when the process is stopping: new logins and mails get 421.
        self.closing = False
        # Organisations by the SHA-256 of their client certificate (server.py keeps it current).
        self.organisations: dict[bytes, Organisation] = {}

    # Authentication (called by protocol.SubmissionSmtp).

    async def check_login(self, peer: Any, login: bytes, password: bytes) -> Submitter | str:
        if self.closing:
            return replies.SHUTTING_DOWN
        client = peer[0] if isinstance(peer, tuple) and peer else None
        return await self._in_thread(
            self._login_executor, self._check_login, client, login, password
        )

    def _check_login(self, client: str | None, login: bytes, password: bytes) -> Submitter | str:
        try:
            token = UsernameToken(
                username=login.decode("utf-8"),
                password=password.decode("utf-8"),
                password_type=PasswordType.TEXT,
            )
        except UnicodeDecodeError:
            return replies.AUTH_INVALID
        try:
            with self._services() as services:
                return Submitter(account=services.authenticator.authenticate(token, client))
        except Unavailable:
            return replies.AUTH_UNAVAILABLE
        except Exception as exc:
            return replies.reply_for(exc)

    # aiosmtpd's hooks.

    def handle_STARTTLS(self, server: Any, session: Any, envelope: Any) -> bool:
        """A client certificate registered for an organisation authenticates the session
        (TLS already verified it against the registered certificates)."""
        ssl_object = (session.ssl or {}).get("ssl_object")
        certificate = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        organisation = self.organisations.get(crypto.sha256(certificate)) if certificate else None
        if organisation is not None:
            session.authenticated = True
            session.auth_data = Submitter(account=organisation.account, organisation=organisation)
            log.info("SMTP session of organisation %s (client certificate)", organisation.name)
        return True

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        # Commands are read one after another, so a pipelining client is served in order.
        return [*responses[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        try:
            normalise_address(address)
        except InvalidAddress as exc:
            return replies.bad_sender(exc)
        submitter = session.auth_data
        if isinstance(submitter, Submitter) and not submitter.may_send_from(address):
            return replies.FOREIGN_SENDER
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return replies.SENDER_OK

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self._limits.max_recipients:
            return replies.too_many_recipients(self._limits.max_recipients)
        try:
            recipient = normalise_address(secure_recipient(address, self._settings.address_suffix))
        except InvalidAddress as exc:
            return replies.reply_for(exc)
        envelope.rcpt_tos.append(recipient)
        envelope.rcpt_options.extend(options)
        return replies.RECIPIENT_OK

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        submitter = session.auth_data
        assert isinstance(submitter, Submitter), "aiosmtpd asks for AUTH before DATA"
        if self.closing:
            return replies.SHUTTING_DOWN
        # Storing may wait for a thread and the database: not the client's silence (RFC
        # 5321 gives the answer to the end of DATA 10 minutes).
        server._reset_timeout(max(self._settings.timeout_seconds, DATA_ANSWER_SECONDS))
        reply = await self._in_thread(
            self._executor,
            self._submit,
            submitter,
            bytes(envelope.original_content),
            tuple(envelope.rcpt_tos),
            str(envelope.mail_from),
            bool(envelope.smtp_utf8),
        )
        self._count(reply)
        return reply

    async def handle_exception(self, error: Exception) -> str:
        return replies.reply_for(error)

    # The submission.

    def _submit(
        self,
        submitter: Submitter,
        raw: bytes,
        recipients: tuple[str, ...],
        mail_from: str,
        smtputf8: bool,
    ) -> str:
        account = submitter.account
        mail: SubmittedMail | None = None
        try:
            mail = read_mail(raw, smtputf8=smtputf8)
            if not all(map(submitter.may_send_from, mail.from_addresses)):
                return replies.FOREIGN_AUTHOR
            draft = draft_of(mail, recipients, raw, self._limits, report_to=mail_from)
            with self._services() as services:
                status = services.messages.send(account, draft)
        except Exception as exc:
            return replies.reply_for(exc, mail.attachments if mail else ())
        log.info(
            "SMTP message %s accepted from account %s for %d recipient(s)",
            status.message_id,
            account.username,
            len(status.recipients),
        )
        return replies.accepted(status.message_id)

    @contextmanager
    def _services(self) -> Iterator[SmtpServices]:
        services = self._open_scope()
        try:
            yield services
        finally:
            services.close()

    async def _in_thread(self, pool: Executor, function: Callable[..., T], *args: Any) -> T:
        """Run `function` in `pool`; it is counted as under way until it returns, even
        when its client hangs up (its commit still answers an MTA that sends again)."""
        loop = asyncio.get_running_loop()
        self.submissions_under_way += 1
        future = pool.submit(function, *args)

        def done(_: object) -> None:
            self.submissions_under_way -= 1

        future.add_done_callback(lambda f: loop.call_soon_threadsafe(done, f))
        return await asyncio.wrap_future(future)


def draft_of(
    mail: SubmittedMail,
    recipients: tuple[str, ...],
    raw: bytes,
    limits: MessageLimits,
    *,
    report_to: str | None = None,
) -> MessageDraft:
    """The draft a SOAP client would send for this mail and these envelope recipients;
    failures and receipts are reported by mail to `report_to` (the envelope sender)."""
    if mail.message_id is None:
        # Without a Message-ID, the same bytes sent again are the same message.
        reference = "sha256:" + crypto.sha256(raw).hex()[:40]
    elif len(mail.message_id) > limits.max_reference_chars:
        raise ValidationError(
            f"the Message-ID is longer than {limits.max_reference_chars} characters; "
            "it is the message's Reference"
        )
    else:
        reference = mail.message_id
    return MessageDraft(
        reference=reference,
        type=mail.type,
        # In a fixed order: an MTA may name them in another when it sends again.
        recipients=tuple(sorted(recipients, key=str.casefold)),
        subject=mail.subject,
        text_body=mail.text_body,
        html_body=mail.html_body,
        attachments=mail.attachments,
        language=mail.language,
        expiry_days=mail.expiry_days,
        report_to=report_to,
    )
