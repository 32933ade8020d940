"""The development mail sink: an SMTP server on localhost that requires STARTTLS (with the
development certificate) and keeps every mail it receives as a file a newcomer can open.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

log = logging.getLogger(__name__)


class StoppingController(Controller):
    """aiosmtpd's threaded Controller, made to stop while clients are still connected. From
    Python 3.12.1, asyncio's Server.wait_closed() waits until every client connection has
    closed, and aiosmtpd 1.4's Controller.stop() waits on it: a client that keeps its
    connection open (the delivery worker keeps its connections for the next mail) held
    stop() until that client's own idle timeout (aio-libs/aiosmtpd#394). This one closes the
    open connections first, which is what stopping a mail server means anyway; on 3.11 it
    changes nothing visible. The tests' SMTP sinks use it too."""

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


class Mailbox:
    """aiosmtpd handler: one .eml file per mail, named so that `ls` lists them in order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._numbers = itertools.count(1)
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{next(self._numbers):06d}.eml"
        (self.folder / name).write_bytes(envelope.original_content or envelope.content)
        log.info("mail for %s kept as %s", ", ".join(envelope.rcpt_tos), name)
        return "250 2.0.0 kept in the development mailbox"


def run_mail_sink(
    *, port: int, folder: Path, cert_file: Path, key_file: Path, stop: threading.Event
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    controller = StoppingController(
        Mailbox(folder), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    log.info("development mail sink on 127.0.0.1:%d, mailbox %s", port, folder)
    try:
        stop.wait()
    finally:
        controller.stop()
