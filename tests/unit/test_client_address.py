"""The client address failed logins are counted by: the peer's, or behind a trusted
reverse proxy the nearest address in X-Forwarded-For that is not a trusted proxy."""

from __future__ import annotations

import pytest

from soap_service.web.app import client_address

PROXIES = frozenset({"10.0.0.1", "10.0.0.2"})


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("192.0.2.7", None, "192.0.2.7"),
        # Not a trusted proxy: what it says of others is not believed.
        ("192.0.2.7", "198.51.100.1", "192.0.2.7"),
        ("10.0.0.1", "198.51.100.1", "198.51.100.1"),
        # Through two proxies; the client's own claim at the front is not believed.
        ("10.0.0.1", "1.2.3.4, 198.51.100.1, 10.0.0.2", "198.51.100.1"),
        ("10.0.0.1", None, "10.0.0.1"),
        ("10.0.0.1", " , ", "10.0.0.1"),
        (None, None, None),
    ],
)
def test_the_client_address(peer: str | None, forwarded: str | None, client: str | None) -> None:
    environ = {}
    if peer is not None:
        environ["REMOTE_ADDR"] = peer
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    assert client_address(environ, PROXIES) == client


def test_a_forwarded_address_is_bounded() -> None:
    environ = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "x" * 10_000}
    assert client_address(environ, PROXIES) == "x" * 64
