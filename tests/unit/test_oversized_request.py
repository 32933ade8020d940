"""A request refused for its size before it was read: the rest of its body is dropped
(a bounded amount) and the connection closed; a client that goes away meanwhile still
gets a fault, never an exception out of the application."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from lxml import etree

from tests.fuzz.test_fuzz_envelopes import Target
from tests.support import SOAP11_ENV

LIMIT = 56 * 1024 * 1024  # SOAP_SERVICE_MAX_REQUEST_BYTES' default


class Stream:
    """A request body of `chunks` blocks; then its end, or, with `drops`, the error of a
    connection the client dropped."""

    def __init__(self, chunks: int, *, drops: bool = False) -> None:
        self.chunks = chunks
        self.drops = drops
        self.read_bytes = 0

    def read(self, size: int) -> bytes:
        if self.chunks == 0:
            if self.drops:
                raise ConnectionResetError("the client went away")
            return b""
        self.chunks -= 1
        self.read_bytes += size
        return b"x" * size


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield Target(tmp_path_factory.mktemp("oversized"))


def post(target: Target, stream: Stream, length: int) -> tuple[str, dict[str, str], str]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/soap/v1",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "text/xml; charset=utf-8",
        "CONTENT_LENGTH": str(length),
        "wsgi.input": stream,
    }
    captured: list[Any] = []
    body = b"".join(target.app(environ, lambda status, headers: captured.extend([status, headers])))
    code = etree.fromstring(body).findtext(f"{{{SOAP11_ENV}}}Body/{{{SOAP11_ENV}}}Fault/faultcode")
    return captured[0], dict(captured[1]), code or ""


def test_the_rest_of_an_oversized_body_is_dropped_and_the_connection_closed(
    target: Target,
) -> None:
    stream = Stream(chunks=3)
    status, headers, code = post(target, stream, LIMIT + 1)
    assert (status, code) == ("500 Internal Server Error", "soap:Client.MessageTooLarge")
    assert headers["Connection"] == "close"
    assert stream.read_bytes > 0  # it tried to drop the rest before answering


def test_a_client_gone_while_its_oversized_body_is_dropped_gets_a_fault(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    stream = Stream(chunks=2, drops=True)
    with caplog.at_level(logging.INFO, logger="soap_service"):
        status, headers, code = post(target, stream, LIMIT + 1)
    assert (status, code) == ("500 Internal Server Error", "soap:Server.InternalError")
    assert headers["Connection"] == "close"
    assert "outcome=Server.InternalError" in caplog.text
    assert "the client went away" not in caplog.text  # the log names the type, not the text


def test_a_declared_length_far_over_the_limit_is_not_read_at_all(target: Target) -> None:
    stream = Stream(chunks=0, drops=True)  # any read would fail
    status, headers, code = post(target, stream, 3 * LIMIT)
    assert (status, code) == ("500 Internal Server Error", "soap:Client.MessageTooLarge")
    assert headers["Connection"] == "close"
