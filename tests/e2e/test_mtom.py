"""MTOM/XOP against the real server: 30 MiB as MTOM is accepted and stored byte for byte,
as inline base64 is; one byte more is Client.MessageTooLarge; a chunked MTOM body is cut
off while it is read."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator

from tests.e2e.conftest import Sender
from tests.e2e.stack import message_id_of
from tests.support import (
    ServiceProcess,
    count_messages,
    envelope,
    fault_of,
    security_header,
    send_message_xml,
    stored_attachments,
)

LIMIT = 30 * 1024 * 1024
BOUNDARY = "uuid:7d0c7b5e-mtom"
CONTENT_TYPE = (
    f'multipart/related; type="application/xop+xml"; boundary="{BOUNDARY}"; '
    'start="<root.message@cxf.apache.org>"; start-info="text/xml"'
)
INCLUDE = '<xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:{cid}"/>'


def mtom_body(sender: Sender, files: dict[str, bytes]) -> bytes:
    """A SendMessage as JAX-WS sends it with MTOM: root part with an XML declaration."""
    attachments = tuple(
        (name, "application/pdf", INCLUDE.format(cid=f"part{n}%40example"))
        for n, name in enumerate(files)
    )
    root = envelope(
        send_message_xml(f"mtom-{uuid.uuid4().hex[:10]}", attachments=attachments),
        security_header(sender.username, sender.password),
    )
    parts = [
        f'--{BOUNDARY}\r\nContent-Type: application/xop+xml; charset=UTF-8; type="text/xml"\r\n'
        "Content-Transfer-Encoding: binary\r\n"
        "Content-ID: <root.message@cxf.apache.org>\r\n\r\n".encode()
        + root  # which starts with its XML declaration
    ]
    for n, content in enumerate(files.values()):
        parts.append(
            f"--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Transfer-Encoding: binary\r\nContent-ID: <part{n}@example>\r\n\r\n".encode()
            + content
        )
    return b"\r\n".join(parts) + f"\r\n--{BOUNDARY}--\r\n".encode()


def test_mtom_and_inline_store_the_same_bytes(service: ServiceProcess, sender: Sender) -> None:
    files = {"lohn.pdf": b"%PDF-1.4\n" + os.urandom(200_000), "kurz.pdf": b"%PDF-1.4\n\r\n--x"}
    by_mtom = message_id_of(service.post(mtom_body(sender, files), content_type=CONTENT_TYPE))
    inline = envelope(
        send_message_xml(
            f"inline-{uuid.uuid4().hex[:10]}",
            attachments=tuple(
                (name, "application/pdf", base64.b64encode(content).decode())
                for name, content in files.items()
            ),
        ),
        security_header(sender.username, sender.password),
    )
    by_inline = message_id_of(service.post(inline))
    assert stored_attachments(service, by_mtom) == stored_attachments(service, by_inline)
    assert stored_attachments(service, by_mtom) == list(files.items())


def test_30_mib_as_mtom_is_accepted_and_one_byte_more_is_refused(
    service: ServiceProcess, sender: Sender
) -> None:
    content = b"%PDF-1.4" + os.urandom(LIMIT - 8)
    message_id = message_id_of(
        service.post(mtom_body(sender, {"big.pdf": content}), content_type=CONTENT_TYPE)
    )
    [(name, stored)] = stored_attachments(service, message_id)
    assert (name, len(stored), stored == content) == ("big.pdf", LIMIT, True)

    count = count_messages(service.database_url)
    code, text = fault_of(
        service.post(mtom_body(sender, {"big.pdf": content + b"x"}), content_type=CONTENT_TYPE)
    )
    assert code == "Client.MessageTooLarge"
    assert str(LIMIT + 1) in text
    assert count_messages(service.database_url) == count


def test_a_chunked_mtom_body_is_capped_while_it_is_read(
    service: ServiceProcess, sender: Sender
) -> None:
    body = mtom_body(sender, {"huge.pdf": b"\0" * (60 * 1024 * 1024)})

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1024 * 1024):
            yield body[start : start + 1024 * 1024]

    count = count_messages(service.database_url)
    response = service.session().post(
        service.url, data=chunks(), headers={"Content-Type": CONTENT_TYPE}, timeout=120
    )
    code, _ = fault_of(response)
    assert code == "Client.MessageTooLarge"
    assert count_messages(service.database_url) == count
