"""The mail an organisation's gateway receives for a confidential message: the message
itself, as an ordinary MIME mail (its subject, text and HTML bodies, attachments), so that
it can be searched and archived in the mail client, S/MIME-signed by the service (RFC 8551
multipart/signed with a detached application/pkcs7-signature), so that its origin and
integrity can be checked.

Written as MIME text, like the notifications: every part is base64, 7-bit with CRLF line
ends, the canonical form a signature covers, which no mail server on the way rewrites.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import format_datetime

from soap_service.crypto import MailSigner
from soap_service.delivery.addresses import smtp_address
from soap_service.delivery.notification import CRLF, encoded_words, from_header
from soap_service.delivery.smime import base64_lines, signed_mail
from soap_service.domain.delivery import DeliveryJob
from soap_service.domain.model import AttachmentDraft

_CRLF = CRLF.encode("ascii")
# Characters a quoted MIME parameter may hold as they are.
_PLAIN_PARAMETER = re.compile(r"[ -~]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, kw_only=True)
class MessageContent:
    """A confidential message as its sender gave it, opened."""

    subject: str
    text_body: bytes  # UTF-8
    html_body: bytes | None
    attachments: tuple[AttachmentDraft, ...]


class GatewayMailWriter:
    def __init__(
        self,
        *,
        signer: Callable[[], MailSigner],
        mail_from: str,
        hostname: str,
        operator_name: str,
    ) -> None:
        self._signer = signer  # loaded when the first gateway mail is written
        self._mail_from = mail_from
        self._hostname = hostname
        self._operator_name = operator_name

    def write(self, job: DeliveryJob, content: MessageContent) -> bytes:
        """The whole RFC 5322 message, CRLF line ends, with the same Message-ID at every
        attempt (a mail sent twice after a crash is recognisably the same)."""
        boundary = f"=_soap-service_{job.message_id}_{job.position}"
        entity = _signed_entity(content, boundary)
        signature = self._signer().sign(entity)
        headers = [
            f"From: {from_header(job.organisation, self._operator_name, self._mail_from)}",
            *([f"Reply-To: <{smtp_address(job.report_to)}>"] if job.report_to else []),
            f"To: <{smtp_address(job.address)}>",
            f"Subject: {encoded_words(content.subject)}",
            f"Date: {format_datetime(job.accepted_at)}",
            f"Message-ID: <{job.message_id}.{job.position}@{self._hostname}>",
            f"Content-Language: {job.language.value}",
            "MIME-Version: 1.0",
            # Where it came from: the message id GetStatus and the journal know, its type.
            f"X-Soap-Service-Message-Id: {job.message_id}",
            f"X-Soap-Service-Type: {job.type.value}",
            f"X-Soap-Service-Delivery: gateway; signed by {self._hostname}",
        ]
        return signed_mail(headers, entity, signature, f"{boundary}-s")


def _signed_entity(content: MessageContent, boundary: str) -> bytes:
    """The part the signature covers: the bodies and the attachments, multipart/mixed.
    It ends without a line break: the CRLF before the next boundary is the boundary's
    (RFC 2046 5.1.1), and the signature must cover exactly these bytes."""
    if content.html_body is None:
        bodies = _part("text/plain; charset=utf-8", content.text_body)
    else:
        bodies = b"".join(
            [
                f'Content-Type: multipart/alternative; boundary="{boundary}-a"'.encode("ascii"),
                _CRLF * 2,
                f"--{boundary}-a".encode("ascii") + _CRLF,
                _part("text/plain; charset=utf-8", content.text_body),
                f"--{boundary}-a".encode("ascii") + _CRLF,
                _part("text/html; charset=utf-8", content.html_body),
                f"--{boundary}-a--".encode("ascii") + _CRLF,
            ]
        )
    parts = [
        f'Content-Type: multipart/mixed; boundary="{boundary}-m"'.encode("ascii"),
        _CRLF * 2,
        f"--{boundary}-m".encode("ascii") + _CRLF,
        bodies,
    ]
    for attachment in content.attachments:
        parts.append(f"--{boundary}-m".encode("ascii") + _CRLF)
        parts.append(
            _part(
                attachment.content_type,
                attachment.content,
                filename=attachment.filename,
            )
        )
    parts.append(f"--{boundary}-m--".encode("ascii"))
    return b"".join(parts)


def _part(content_type: str, data: bytes, *, filename: str | None = None) -> bytes:
    lines = [f"Content-Type: {content_type}"]
    if filename is not None:
        lines[0] += f"; {_parameter('name', filename)}"
        lines.append(f"Content-Disposition: attachment; {_parameter('filename', filename)}")
    lines.append("Content-Transfer-Encoding: base64")
    return CRLF.join(lines).encode("ascii") + _CRLF * 2 + base64_lines(data)


def _parameter(name: str, value: str) -> str:
    """A MIME parameter: quoted if it is printable ASCII, else RFC 2231's UTF-8 form
    (which every current mail client reads)."""
    value = _CONTROL.sub(" ", value)
    if _PLAIN_PARAMETER.fullmatch(value):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{name}="{escaped}"'
    return f"{name}*=utf-8''{urllib.parse.quote(value, safe='')}"
