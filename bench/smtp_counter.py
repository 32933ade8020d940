"""The benchmark's mail sink: an aiosmtpd server requiring STARTTLS that answers 250 and
keeps only a count, in its own process so it does not share a GIL with what it measures.

    python -m bench.smtp_counter PORT CERT_CHAIN KEY
"""

from __future__ import annotations

import signal
import ssl
import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller


class Counter:
    def __init__(self) -> None:
        self.mails = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails += 1
        return "250 OK"


def main() -> None:
    port, cert_chain, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_chain, key)
    controller = Controller(
        Counter(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
