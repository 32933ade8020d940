"""The SMTP submission benchmark's baseline: a bare aiosmtpd server that speaks what the
channel speaks (STARTTLS required, AUTH PLAIN accepted for anyone), parses each mail's
MIME, decodes its parts and stores nothing.

    python -m bench.smtp_sink_baseline PORT CERT_CHAIN KEY
"""

from __future__ import annotations

import email
import email.policy
import signal
import ssl
import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class ParsingSink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        for part in message.walk():
            if not part.is_multipart():
                part.get_payload(decode=True)
        return "250 2.0.0 Ok"


def accept_anyone(*_: Any) -> AuthResult:
    return AuthResult(success=True)


def main() -> None:
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    controller = Controller(
        ParsingSink(),
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=accept_anyone,
        data_size_limit=48 * 1024 * 1024,
    )
    controller.start()
    print("sink listening", flush=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
