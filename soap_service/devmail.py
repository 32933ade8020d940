"""The development mail sink: an SMTP server on localhost that requires STARTTLS (with the
development certificate) and keeps every mail it receives as a file a newcomer can open.
"""

from __future__ import annotations

import itertools
import logging
import ssl
import threading
import time
from pathlib import Path
from typing import Any

from soap_service.mail_controller import StoppingController

log = logging.getLogger(__name__)


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
