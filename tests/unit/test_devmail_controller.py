"""The mail sinks' controller (devmail.StoppingController) stops while a client keeps its
connection open, and drops that connection: on Python 3.12.1 and newer, aiosmtpd's own
Controller waited for the client to leave (asyncio's Server.wait_closed), which held every
test sink's teardown for the delivery worker's idle timeout."""

from __future__ import annotations

import smtplib
import ssl
import threading

import pytest
import trustme

from soap_service.devmail import StoppingController
from tests.support import free_port


class _Keep:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


def test_stop_drops_a_tls_connection_the_client_keeps_open() -> None:
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    controller = StoppingController(
        _Keep(), hostname="127.0.0.1", port=free_port(), tls_context=server_tls
    )
    controller.start()
    client = smtplib.SMTP("127.0.0.1", controller.port, timeout=30)
    try:
        assert client.starttls(context=client_tls)[0] == 220
        assert client.ehlo()[0] == 250
        client.sendmail("a@example.ch", ["b@example.ch"], b"Subject: kept\r\n\r\nbody\r\n")
        stopping = threading.Thread(target=controller.stop, daemon=True)
        stopping.start()
        stopping.join(timeout=30)  # a hang fails the test instead of holding it
        assert not stopping.is_alive(), "stop() waited for the client to leave"
        # The server closed the connection: the client's next command finds it gone.
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
    finally:
        client.close()
