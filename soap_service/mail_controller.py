"""aiosmtpd's threaded Controller, made to stop while clients are still connected.

From Python 3.12.1, `asyncio.Server.wait_closed()` waits until every client connection has
closed, and aiosmtpd 1.4's `Controller.stop()` waits on it: a client that keeps its
connection open (the delivery worker keeps its connections for the next mail) held
`stop()` until that client's own idle timeout (aio-libs/aiosmtpd#394). This controller
closes the open connections first, which is what stopping a mail server means anyway; on
3.11 it changes nothing visible. Used by the development mail sink and the tests' sinks.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class StoppingController(Controller):
    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def factory(self) -> SMTP:
        session: SMTP = super().factory()  # type: ignore[no-untyped-call]
        self._sessions.add(session)
        return session

    def stop(self, no_assert: bool = False) -> None:
        if self._thread is not None:
            self.loop.call_soon_threadsafe(self._close_connections)
        super().stop(no_assert)

    def _close_connections(self) -> None:
        """In the server's loop: drop every open connection."""
        for session in list(self._sessions):
            if isinstance(session.transport, asyncio.WriteTransport):
                session.transport.abort()
