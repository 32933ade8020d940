"""One SMTP session: aiosmtpd's protocol with the channel's rules on top.

- Every reply after EHLO carries an enhanced status code (replies.with_enhanced_code).
- AUTH PLAIN and LOGIN are parsed by aiosmtpd, but the password is checked by the handler
  in a worker thread: a scrypt takes over 100 ms, which must not stop every other session.
- A client silent for the timeout hears 421 4.4.2 before the line is closed; data that
  keeps arriving (a large mail, slowly) is not silence.
- MAIL FROM:<> (a bounce) is refused with its reason: a secure message needs a sender
  that can hear back.
"""

from __future__ import annotations

import logging
import re
from typing import Any, AnyStr, Protocol

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from soap_service.smtp import replies

log = logging.getLogger(__name__)


class LoginChecker(Protocol):
    async def check_login(self, peer: Any, login: bytes, password: bytes) -> object:
        """Who these credentials prove (the session's auth_data), or the reply (a str)
        that refuses them."""
        ...


class SubmissionSmtp(SMTP):
    def __init__(self, handler: LoginChecker, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        # The greeting and the answers to EHLO and HELO have no enhanced code (RFC 2034).
        self._greeted = False
        self._answering_hello = False

    async def push(self, status: AnyStr) -> None:
        plain = not self._greeted or self._answering_hello
        self._greeted = True
        if isinstance(status, str):
            reply = status if plain else replies.with_enhanced_code(status, size_limit=self._size)
            await super().push(reply.encode("utf-8"))
        else:
            await super().push(status)

    @property
    def _size(self) -> int:
        return self.data_size_limit or 0

    async def smtp_MAIL(self, arg: str | None) -> None:
        if (
            self.session is not None
            and self.session.authenticated
            and arg is not None
            and re.match(r"(?i)FROM:\s*<>", arg.strip())
        ):
            await self.push(replies.NO_SENDER)
            return
        await super().smtp_MAIL(arg)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._answering_hello = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._answering_hello = False

    async def smtp_HELO(self, hostname: str) -> None:
        self._answering_hello = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._answering_hello = False

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        """aiosmtpd calls this synchronously, in the event loop: only pass the
        credentials on; `_verified` checks them off the loop."""
        return AuthResult(success=False, handled=False, auth_data=auth_data)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verified(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._verified(await super().auth_LOGIN(_, args))

    async def _verified(self, parsed: AuthResult) -> AuthResult:
        credentials = parsed.auth_data
        if not isinstance(credentials, LoginPassword):
            return parsed  # aiosmtpd refused the exchange itself and said why
        assert self.session is not None
        outcome = await self.event_handler.check_login(
            self.session.peer, credentials.login, credentials.password
        )
        if isinstance(outcome, str):
            return AuthResult(success=False, handled=False, message=outcome)
        return AuthResult(success=True, auth_data=outcome, message=replies.AUTH_OK)

    def data_received(self, data: bytes) -> None:
        # aiosmtpd restarts its idle timer per command only: a large mail arriving slowly
        # is not a silent client.
        self._reset_timeout()
        super().data_received(data)

    def _timeout_cb(self) -> None:
        log.info("SMTP client silent for %d s: disconnected", self._timeout_duration)
        if self.transport is not None and not self.transport.is_closing():
            self._writer.write(b"421 4.4.2 Idle for too long; closing the connection\r\n")
        super()._timeout_cb()  # type: ignore[no-untyped-call]
