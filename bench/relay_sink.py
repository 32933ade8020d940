"""The benchmark's relay: an aiosmtpd server requiring STARTTLS that answers 250 to every
mail and keeps nothing, in its own process so that it shares no GIL with what it measures.

    python -m bench.relay_sink PORT CERT_CHAIN KEY

It stands in for the relay or the recipients' servers, which are other machines: what it
costs is the benchmark's, not the service's. So it reads a mail's DATA up to the closing
dot in a few pieces instead of aiosmtpd's loop over every line, which keeps each line for
a handler (130 lines a notification) and cost more CPU than the rest of the sink
together. Everything else is aiosmtpd's own, and it offers PIPELINING, as the relays the
service meets do (Postfix among them).
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

END_OF_DATA = b"\r\n.\r\n"


async def skip_data(reader: asyncio.StreamReader) -> None:
    """Read up to and including the line "." that ends DATA (RFC 5321 4.1.1.4).

    DATA's own line ended just before, so the end may also be a "." at the very start.
    """
    tail = b"\r\n"  # the last two bytes read
    while True:
        try:
            piece = await reader.readuntil(b".\r\n")
            if (tail + piece).endswith(END_OF_DATA):
                return
        except asyncio.LimitOverrunError as exc:  # a long run without ".\r\n"
            piece = await reader.readexactly(exc.consumed)
        tail = (tail + piece)[-2:]


class SinkSmtp(SMTP):
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if self.envelope is None or not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        await skip_data(self._reader)
        self.envelope = self._create_envelope()
        await self.push("250 OK")


class Handler:
    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd leaves to this hook
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


class SinkController(Controller):
    def factory(self) -> SMTP:
        return SinkSmtp(self.handler, **self.SMTP_kwargs)


def main() -> None:
    port, cert_chain, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_chain, key)
    controller = SinkController(
        Handler(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
