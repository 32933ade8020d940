"""The notification e-mail: multipart text and HTML in the recipient's language, a Read
button to the pickup page, and an HTML attachment that says the same on its own (offline
too: it does not forward anywhere) with the same link. It never carries the message's
content or attachments.

Signed with S/MIME by the operator's mail signing key, as IncaMail signs its invitations,
so that a recipient's mail program shows it as genuine (a defence against phishing that
imitates it), and its subject says who secured it, in the recipient's language.

Written as MIME text from precompiled templates, not built with the `email` package: the
package costs over a millisecond per mail, more than sending it over an open connection.
The tests parse every kind of notification back with the `email` package.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from html import escape
from pathlib import Path

import jinja2

from soap_service.crypto import MailSigner
from soap_service.delivery.addresses import smtp_address
from soap_service.delivery.smime import signed_mail
from soap_service.delivery.texts import KINDS, TEXTS
from soap_service.display import display_time
from soap_service.domain.delivery import DeliveryJob
from soap_service.domain.model import Language, MessageType
from soap_service.settings import OperatorIdentity

CRLF = "\r\n"
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
    message_id: str  # the Message-ID header: the same for every attempt at one recipient
    data: bytes  # the whole RFC 5322 message, CRLF line ends


class NotificationWriter:
    def __init__(
        self,
        *,
        mail_from: str,
        hostname: str,
        pickup_base_url: str,
        operator: OperatorIdentity,
        signer: Callable[[], MailSigner] | None,
    ) -> None:
        self._mail_from = mail_from
        self._hostname = hostname
        self._pickup_base_url = pickup_base_url
        self._operator = operator
        # Loaded at the first notification; None: unsigned (only workers built by tests).
        self._signer = signer

    def message_id(self, job: DeliveryJob) -> str:
        return f"<{job.message_id}.{job.position}@{self._hostname}>"

    def write(
        self, job: DeliveryJob, *, token: str, subject: str | None, now: datetime
    ) -> Notification:
        # A shown subject is the message's own: rendered for it alone, never cached.
        render = _bodies if subject is None else _render_bodies
        title, text, html, attachment = render(
            job.language,
            job.type,
            job.organisation,
            _display_time(job.expires_at, job.language),
            subject,
            self._operator,
            self._signer is not None,
        )
        url = self._pickup_base_url + token
        html_url = escape(url, quote=True)
        boundary = f"=_soap-service_{job.message_id}_{job.position}"
        headers = [
            f"From: {from_header(job.organisation, self._operator.name, self._mail_from)}",
            f"To: <{smtp_address(job.address)}>",
            f"Subject: {encoded_words(title)}",
            f"Date: {format_datetime(now)}",
            f"Message-ID: {self.message_id(job)}",
            f"Content-Language: {job.language.value}",
            "MIME-Version: 1.0",
            "Auto-Submitted: auto-generated",
        ]
        mixed = [
            f'Content-Type: multipart/mixed; boundary="{boundary}-m"',
            "",
            f"--{boundary}-m",
            f'Content-Type: multipart/alternative; boundary="{boundary}-a"',
            "",
            f"--{boundary}-a",
            _part("text/plain", text.replace(_URL, url)),
            f"--{boundary}-a",
            _part("text/html", html.replace(_URL, html_url)),
            f"--{boundary}-a--",
            f"--{boundary}-m",
            _part("text/html", attachment.replace(_URL, html_url), filename="message.html"),
            f"--{boundary}-m--",
        ]
        # ASCII but for a non-ASCII local part, which only goes to SMTPUTF8 servers.
        if self._signer is None:
            data = CRLF.join([*headers, *mixed, ""]).encode("utf-8")
        else:
            entity = CRLF.join(mixed).encode("ascii")
            signature = self._signer().sign(entity)
            data = signed_mail(headers, entity, signature, f"{boundary}-s")
        return Notification(message_id=self.message_id(job), data=data)


# The templates are rendered once per kind of notification, with this in place of the
# recipient's own link: a payroll run renders them once and each mail only fills its link.
_URL = "@@PICKUP-URL@@"


def _render_bodies(
    language: Language,
    message_type: MessageType,
    organisation: str,
    expiry: str,
    subject: str | None,
    operator: OperatorIdentity,
    signed: bool,
) -> tuple[str, str, str, str]:
    """(Subject header text, plain text, HTML, HTML attachment) with `_URL` for the link."""
    texts = TEXTS[language]
    title = texts["subject"].format(organisation=organisation)
    if subject:
        title = f"{title}: {subject}"
    title = f"{title} {texts['secured'].format(operator=operator.name)}"
    values = {
        "language": language.value,
        "t": texts,
        "url": _URL,
        "subject": title,
        "operator": operator,
        "signed": texts["signed"].format(operator=operator.name) if signed else "",
        "offline": texts["offline"].format(operator=operator.name),
        "intro": texts["intro"].format(
            organisation=organisation, kind=KINDS[language][message_type]
        ),
        "until": texts["until"].format(expiry=expiry),
        "registered": message_type is MessageType.REGISTERED,
    }
    return title, _TEXT.render(values), _HTML.render(values), _ATTACHMENT.render(values)


_bodies = functools.lru_cache(maxsize=512)(_render_bodies)


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


@functools.lru_cache(maxsize=1024)
def from_header(organisation: str, operator_name: str, address: str) -> str:
    """`Organisation (Operator) <address>`: whose message it is, and who delivers it."""
    return f"{encoded_words(f'{organisation} ({operator_name})')} <{address}>"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def encoded_words(text: str) -> str:
    """RFC 2047 B-encoded words, folded: any header text, safe in any header. (The `email`
    package's Header does the same at twenty times the cost.) Line breaks and other
    control characters become spaces: a decoded header is one line."""
    data = " ".join(_CONTROL.sub(" ", text).split()).encode("utf-8")
    words = []
    start = 0
    while start < len(data):
        # 45 bytes make a 75-character word; never cut a UTF-8 sequence in two.
        end = min(start + 45, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        words.append("=?utf-8?b?" + base64.b64encode(data[start:end]).decode("ascii") + "?=")
        start = end
    return (CRLF + " ").join(words)


def _display_time(moment: datetime, language: Language) -> str:
    """As the pages write it (display_time keeps what it wrote, by minute)."""
    return display_time(moment, language.value)
