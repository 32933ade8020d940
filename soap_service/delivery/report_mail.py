"""The mails that reports to a sender are: a delivery status notification (RFC 3464
multipart/report) when a recipient fails, and a registered message's signed receipt as
a PDF attachment. In the message's language; the subject is the sender's own.
"""

from __future__ import annotations

import base64
import quopri
import re
from datetime import datetime
from email.utils import format_datetime

from soap_service.delivery.addresses import smtp_address
from soap_service.delivery.notification import encoded_words
from soap_service.documents.receipt_pdf import receipt_title
from soap_service.domain.model import Language
from soap_service.domain.receipts import ReceiptKind
from soap_service.domain.sender_reports import ReportJob

CRLF = "\r\n"
# A server's reply: its code, and the enhanced code right after it, if any.
_REPLY = re.compile(r"^([245])\d\d[ -](?:([245])\.(\d{1,3}\.\d{1,3})\b)?")

_FAILURE_SUBJECT = {
    Language.DE: "Nicht zustellbar: {subject}",
    Language.FR: "Non distribuable : {subject}",
    Language.IT: "Non recapitabile: {subject}",
    Language.EN: "Undeliverable: {subject}",
}
_FAILURE_TEXT = {
    Language.DE: (
        "Ihre sichere Nachricht «{subject}» (Referenz {reference}) konnte {recipient} "
        "nicht zugestellt werden.\r\n\r\nGrund: {reason}\r\n"
    ),
    Language.FR: (
        "Votre message sécurisé « {subject} » (référence {reference}) n'a pas pu être "
        "remis à {recipient}.\r\n\r\nMotif : {reason}\r\n"
    ),
    Language.IT: (
        "Il Suo messaggio sicuro «{subject}» (riferimento {reference}) non ha potuto "
        "essere recapitato a {recipient}.\r\n\r\nMotivo: {reason}\r\n"
    ),
    Language.EN: (
        'Your secure message "{subject}" (reference {reference}) could not be delivered '
        "to {recipient}.\r\n\r\nReason: {reason}\r\n"
    ),
}
_RECEIPT_TEXT = {
    Language.DE: (
        "{name} für Ihre eingeschriebene Nachricht «{subject}» (Referenz {reference}){about}."
        "\r\n\r\nDie signierte Quittung liegt als PDF bei.\r\n"
    ),
    Language.FR: (
        "{name} pour votre message recommandé « {subject} » (référence {reference}){about}."
        "\r\n\r\nLa quittance signée est jointe en PDF.\r\n"
    ),
    Language.IT: (
        "{name} per il Suo messaggio raccomandato «{subject}» (riferimento {reference})"
        "{about}.\r\n\r\nLa ricevuta firmata è allegata in PDF.\r\n"
    ),
    Language.EN: (
        '{name} for your registered message "{subject}" (reference {reference}){about}.'
        "\r\n\r\nThe signed receipt is attached as a PDF.\r\n"
    ),
}


_RECIPIENT = {
    Language.DE: "Empfänger:",
    Language.FR: "destinataire :",
    Language.IT: "destinatario:",
    Language.EN: "recipient",
}


class ReportMailWriter:
    def __init__(self, *, mail_from: str, hostname: str, sender_name: str) -> None:
        self._mail_from = mail_from
        self._hostname = hostname
        self._sender_name = sender_name

    def failure(self, job: ReportJob, subject: str, now: datetime) -> bytes:
        """RFC 3464: a human part, the machine-readable status, the original's headers."""
        recipient = job.recipient or ""
        reason = job.recipient_error or "delivery failed"
        boundary = f"=_report_{job.report_id}"
        status = _status_code(reason)
        text = _FAILURE_TEXT[job.language].format(
            subject=subject, reference=job.reference, recipient=recipient, reason=reason
        )
        delivery_status = CRLF.join(
            [
                f"Reporting-MTA: dns; {self._hostname}",
                f"Arrival-Date: {format_datetime(job.accepted_at)}",
                "",
                f"Final-Recipient: {_address_type(recipient)}; {smtp_address(recipient)}",
                "Action: failed",
                f"Status: {status}",
                f"Diagnostic-Code: {_diagnostic(reason)}",
                f"Last-Attempt-Date: {format_datetime(job.recipient_changed_at or now)}",
                "",
            ]
        )
        original = CRLF.join(
            [*_original_id(job, "Message-ID"), f"Subject: {encoded_words(subject)}", ""]
        )
        body = CRLF.join(
            [
                "This is a MIME-formatted delivery status notification.",
                f"--{boundary}",
                _text_part(text),
                f"--{boundary}",
                "Content-Type: message/delivery-status",
                "",
                delivery_status,
                f"--{boundary}",
                "Content-Type: text/rfc822-headers",
                "",
                original,
                f"--{boundary}--",
                "",
            ]
        )
        return self._mail(
            job,
            title=_FAILURE_SUBJECT[job.language].format(subject=subject),
            content_type=(f'multipart/report; report-type=delivery-status; boundary="{boundary}"'),
            body=body,
            now=now,
            auto="auto-replied",
        )

    def receipt(
        self, job: ReportJob, subject: str, filename: str, pdf: bytes, now: datetime
    ) -> bytes:
        # The receipt's own title (documents/receipt_pdf.py): the PDF and its mail agree.
        name = receipt_title(ReceiptKind(job.kind.value), job.language)
        about = f", {_RECIPIENT[job.language]} {job.recipient}" if job.recipient else ""
        text = _RECEIPT_TEXT[job.language].format(
            name=name, subject=subject, reference=job.reference, about=about
        )
        boundary = f"=_receipt_{job.report_id}"
        encoded = base64.encodebytes(pdf).decode("ascii").replace("\n", CRLF)
        body = CRLF.join(
            [
                f"--{boundary}",
                _text_part(text),
                f"--{boundary}",
                f'Content-Type: application/pdf; name="{filename}"',
                f'Content-Disposition: attachment; filename="{filename}"',
                "Content-Transfer-Encoding: base64",
                "",
                encoded,
                f"--{boundary}--",
                "",
            ]
        )
        return self._mail(
            job,
            title=f"{name}: {subject}",
            content_type=f'multipart/mixed; boundary="{boundary}"',
            body=body,
            now=now,
            auto="auto-generated",
        )

    def _mail(
        self, job: ReportJob, *, title: str, content_type: str, body: str, now: datetime, auto: str
    ) -> bytes:
        headers = [
            f"From: {encoded_words(self._sender_name)} <{self._mail_from}>",
            f"To: <{smtp_address(job.report_to)}>",
            f"Subject: {encoded_words(title)}",
            f"Date: {format_datetime(now)}",
            f"Message-ID: <report-{job.report_id}@{self._hostname}>",
            *_original_id(job, "References"),
            "MIME-Version: 1.0",
            f"Auto-Submitted: {auto}",
            f"Content-Type: {content_type}",
        ]
        return (CRLF.join(headers) + CRLF + CRLF + body).encode("utf-8")


def _original_id(job: ReportJob, header: str) -> list[str]:
    """The submitted mail's Message-ID (its Reference), if it had one."""
    return [f"{header}: <{job.reference}>"] if "@" in job.reference else []


def _status_code(reason: str) -> str:
    """The enhanced code that follows the server's reply code (of the same class), else
    the generic one; a delivery given up after retries is 4.4.7 (delivery time expired)."""
    if reason.startswith("gave up after"):
        return "4.4.7"
    found = _REPLY.match(reason)
    if found and found.group(2) == found.group(1):
        return f"{found.group(2)}.{found.group(3)}"
    return "5.0.0"


def _diagnostic(reason: str) -> str:
    """RFC 3464's Diagnostic-Code: `smtp;` for a server's reply, the service's own words
    (no route, no TLS, gave up) under an X- type."""
    kind = "smtp" if _REPLY.match(reason) else "X-soap-service"
    one_line = re.sub(r"[\r\n]+", " ", reason)[:900]
    return f"{kind}; {one_line}"


def _address_type(address: str) -> str:
    return "rfc822" if address.isascii() else "utf-8"  # RFC 6533


def _text_part(text: str) -> str:
    """A UTF-8 text part's headers and body, in 7-bit lines: the receiving server need not
    offer 8BITMIME."""
    encoded = quopri.encodestring(text.replace("\r\n", "\n").encode("utf-8"))
    return CRLF.join(
        [
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
            "",
            encoded.decode("ascii").replace("\n", CRLF),
        ]
    )
