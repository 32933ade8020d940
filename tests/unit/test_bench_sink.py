"""The benchmark's mail sink reads DATA in pieces up to the closing dot: it must stop
exactly there, wherever the pieces split, or the next command would be read as mail (a
hang) or mail as commands (500 replies)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from pathlib import Path

import pytest

from bench.delivery import start_sink, stop
from bench.relay_sink import skip_data
from bench.send_message import make_tls

NEXT = b"MAIL FROM:<next@example.com>\r\n"

MAILS = {
    "empty": b".\r\n",
    "one line": b"Subject: a\r\n.\r\n",
    "a line ending with a dot": b"Subject: a\r\n\r\nThe end.\r\nSigned.\r\n.\r\n",
    "a dot-stuffed line": b"Subject: a\r\n\r\n..\r\n...\r\n.x\r\n.\r\n",
    "longer than the reader's limit": b"Subject: a\r\n\r\n" + b"x" * 5000 + b"\r\n.\r\n",
}


async def rest_after_data(pieces: list[bytes], limit: int) -> bytes:
    reader = asyncio.StreamReader(limit=limit)
    for piece in pieces:
        reader.feed_data(piece)
    reader.feed_eof()
    await skip_data(reader)
    return await reader.read()


@pytest.mark.parametrize("mail", MAILS.values(), ids=MAILS.keys())
@pytest.mark.parametrize("split", [None, 1, 2, 3, 7])
def test_skip_data_stops_after_the_closing_dot(mail: bytes, split: int | None) -> None:
    stream = mail + NEXT
    pieces = [stream] if split is None else [stream[:split], stream[split:]]

    assert asyncio.run(rest_after_data(pieces, limit=1001)) == NEXT


def test_the_sink_answers_each_mail_and_the_command_after_it(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    sink, port = start_sink(tls)
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_cert))
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo()
            assert client.docmd("MAIL", "FROM:<a@example.com>")[0] == 530  # STARTTLS first
            client.starttls(context=context)
            client.ehlo()
            for mail in MAILS.values():
                assert client.docmd("MAIL", "FROM:<a@example.com>")[0] == 250
                assert client.docmd("RCPT", "TO:<b@example.com>")[0] == 250
                assert client.docmd("DATA")[0] == 354
                client.send(mail)
                assert client.getreply() == (250, b"OK")
                assert client.noop()[0] == 250
            assert client.docmd("DATA")[0] == 503
    finally:
        stop(sink)


def test_the_sink_offers_pipelining_after_starttls(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    sink, port = start_sink(tls)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.starttls(context=ssl.create_default_context(cafile=str(tls.ca_cert)))
            client.ehlo()
            assert client.has_extn("pipelining") and client.has_extn("smtputf8")
            client.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            assert [client.getreply()[0] for _ in range(3)] == [250, 250, 354]
            client.send(MAILS["one line"])
            assert client.getreply() == (250, b"OK")
    finally:
        stop(sink)
