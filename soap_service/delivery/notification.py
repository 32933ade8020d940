"""The notification e-mail: multipart text and HTML in the recipient's language, a Read
button to the pickup page, and an HTML attachment that opens the same page. It never
carries the message's content or attachments.

Written as MIME text from precompiled templates, not built with the `email` package: the
package costs over a millisecond per mail, more than sending it over an open connection.
The tests parse every kind of notification back with the `email` package.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from soap_service.delivery.addresses import smtp_address
from soap_service.delivery.texts import KINDS, TEXTS
from soap_service.domain.delivery import DeliveryJob
from soap_service.domain.model import Language, MessageType

CRLF = "\r\n"
# Expiry times are shown as the recipients (Swiss payslips) read clocks.
DISPLAY_ZONE = ZoneInfo("Europe/Zurich")
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=jinja2.select_autoescape(["html.j2"]),
    keep_trailing_newline=True,
)
_TEXT = _TEMPLATES.get_template("notification.txt.j2")
_HTML = _TEMPLATES.get_template("notification.html.j2")
_ATTACHMENT = _TEMPLATES.get_template("attachment.html.j2")


@dataclass(frozen=True, kw_only=True)
class Notification:
    recipient: str
    message_id: str  # the Message-ID header: the same for every attempt at one recipient
    data: bytes  # the whole RFC 5322 message, CRLF line ends


class NotificationWriter:
    def __init__(self, *, mail_from: str, hostname: str, pickup_base_url: str) -> None:
        self._mail_from = mail_from
        self._hostname = hostname
        self._pickup_base_url = pickup_base_url

    def message_id(self, job: DeliveryJob) -> str:
        return f"<{job.message_id}.{job.position}@{self._hostname}>"

    def write(
        self, job: DeliveryJob, *, token: str, subject: str | None, now: datetime
    ) -> Notification:
        texts = TEXTS[job.language]
        values = {
            "language": job.language.value,
            "t": texts,
            "url": self._pickup_base_url + token,
            "intro": texts["intro"].format(
                organisation=job.organisation, kind=KINDS[job.language][job.type]
            ),
            "until": texts["until"].format(expiry=_display_time(job.expires_at, job.language)),
            "registered": job.type is MessageType.REGISTERED,
        }
        title = texts["subject"].format(organisation=job.organisation)
        if subject:
            title = f"{title}: {subject}"
        values["subject"] = title
        boundary = f"=_soap-service_{job.message_id}_{job.position}"
        headers = [
            f"From: {_address(job.organisation, self._mail_from)}",
            f"To: <{smtp_address(job.address)}>",
            f"Subject: {Header(title, 'utf-8').encode(linesep=CRLF)}",
            f"Date: {format_datetime(now)}",
            f"Message-ID: {self.message_id(job)}",
            "MIME-Version: 1.0",
            "Auto-Submitted: auto-generated",
            f'Content-Type: multipart/mixed; boundary="{boundary}-m"',
        ]
        parts = [
            CRLF.join(headers),
            "",
            f"--{boundary}-m",
            f'Content-Type: multipart/alternative; boundary="{boundary}-a"',
            "",
            f"--{boundary}-a",
            _part("text/plain", _TEXT.render(values)),
            f"--{boundary}-a",
            _part("text/html", _HTML.render(values)),
            f"--{boundary}-a--",
            f"--{boundary}-m",
            _part("text/html", _ATTACHMENT.render(values), filename="message.html"),
            f"--{boundary}-m--",
            "",
        ]
        return Notification(
            recipient=job.address,
            message_id=self.message_id(job),
            # ASCII but for a non-ASCII local part, which only goes to SMTPUTF8 servers.
            data=CRLF.join(parts).encode("utf-8"),
        )


def _part(content_type: str, text: str, *, filename: str | None = None) -> str:
    lines = [f"Content-Type: {content_type}; charset=utf-8"]
    if filename:
        lines[0] += f'; name="{filename}"'
        lines.append(f'Content-Disposition: attachment; filename="{filename}"')
    lines.append("Content-Transfer-Encoding: base64")
    lines.append("")
    encoded = base64.encodebytes(text.encode("utf-8")).decode("ascii")
    lines.append(encoded.rstrip("\n").replace("\n", CRLF))
    return CRLF.join(lines)


def _address(display_name: str, address: str) -> str:
    name = Header(f"{display_name} (soap-service)", "utf-8").encode(linesep=CRLF)
    return f"{name} <{address}>"


def _display_time(moment: datetime, language: Language) -> str:
    local = moment.astimezone(DISPLAY_ZONE)
    if language is Language.EN:
        return local.strftime("%Y-%m-%d %H:%M (%Z)")
    return local.strftime("%d.%m.%Y %H:%M (%Z)")
