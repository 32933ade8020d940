"""A receipt as a one- or more-page PDF (reportlab), before it is signed.

Plain and factual: what the receipt attests, then the message's facts as a table of
labels and values, then the SHA-256 of each body and attachment. The font is the Vera
face that reportlab ships, embedded, so that names and subjects in any Latin script print
as given on every reader.
"""

from __future__ import annotations

import functools
import io
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import reportlab
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from soap_service.domain.receipts import ReceiptFacts, ReceiptKind

ZONE = ZoneInfo("Europe/Zurich")
TITLES = {
    ReceiptKind.SUBMISSION: "Submission receipt",
    ReceiptKind.PICKUP: "Pickup receipt",
    ReceiptKind.REFUSAL: "Refusal receipt",
    ReceiptKind.EXPIRY: "Expiry receipt",
}
ATTESTS = {
    ReceiptKind.SUBMISSION: "The service accepted and stored this registered message.",
    ReceiptKind.PICKUP: "The recipient accepted this registered message and could open it.",
    ReceiptKind.REFUSAL: "The recipient refused this registered message.",
    ReceiptKind.EXPIRY: "The recipient neither accepted nor refused this registered message "
    "before it expired.",
}
EVENT_LABELS = {
    ReceiptKind.SUBMISSION: "Accepted by the service",
    ReceiptKind.PICKUP: "Accepted by the recipient",
    ReceiptKind.REFUSAL: "Refused by the recipient",
    ReceiptKind.EXPIRY: "Expired",
}
LEFT, RIGHT, TOP, BOTTOM = 20 * mm, A4[0] - 20 * mm, A4[1] - 20 * mm, 20 * mm
LABEL_WIDTH = 48 * mm


@functools.cache
def _fonts() -> tuple[str, str]:
    folder = Path(reportlab.__file__).parent / "fonts"
    pdfmetrics.registerFont(TTFont("Vera", str(folder / "Vera.ttf")))
    pdfmetrics.registerFont(TTFont("VeraBd", str(folder / "VeraBd.ttf")))
    return "Vera", "VeraBd"


def render_receipt(facts: ReceiptFacts) -> bytes:
    regular, bold = _fonts()
    output = io.BytesIO()
    page = canvas.Canvas(output, pagesize=A4, invariant=True, pageCompression=1)
    page.setTitle(f"{TITLES[facts.kind]} {facts.message_id}")
    page.setAuthor(facts.sender_organisation)
    page.setSubject(TITLES[facts.kind])
    y = TOP

    def line(label: str, value: str, *, size: float = 9.5) -> None:
        nonlocal y
        for number, text in enumerate(_wrapped(value, regular, size, RIGHT - LEFT - LABEL_WIDTH)):
            if y < BOTTOM:
                page.showPage()
                y = TOP
            if number == 0:
                page.setFont(bold, size)
                page.drawString(LEFT, y, label)
            page.setFont(regular, size)
            page.drawString(LEFT + LABEL_WIDTH, y, text)
            y -= size * 1.45

    page.setFont(bold, 16)
    page.drawString(LEFT, y, TITLES[facts.kind])
    y -= 9 * mm
    page.setFont(regular, 10)
    page.drawString(LEFT, y, ATTESTS[facts.kind])
    y -= 10 * mm

    line("Receipt", facts.receipt_id)
    line("Issued", _time(facts.issued_at))
    line(EVENT_LABELS[facts.kind], _time(facts.event_at))
    y -= 3 * mm
    line("Message", facts.message_id)
    line("Sender's reference", facts.reference)
    line("Sender", f"{facts.sender_organisation} (account {facts.sender_account})")
    line("Recipient" if len(facts.recipients) == 1 else "Recipients", ", ".join(facts.recipients))
    line("Subject", facts.subject)
    line("Submitted", _time(facts.accepted_at))
    line("Expires", _time(facts.expires_at))
    y -= 3 * mm
    line("SHA-256 text body", facts.text_body_sha256, size=8.5)
    if facts.html_body_sha256 is not None:
        line("SHA-256 HTML body", facts.html_body_sha256, size=8.5)
    for number, attachment in enumerate(facts.attachments, start=1):
        line(f"Attachment {number}", f"{attachment.filename} ({attachment.size} bytes)")
        line("SHA-256", attachment.sha256, size=8.5)
    y -= 6 * mm
    page.setFont(regular, 8)
    page.drawString(
        LEFT,
        max(y, BOTTOM),
        "Times in Swiss time (Europe/Zurich). This document is signed with the service's key.",
    )
    page.showPage()
    page.save()
    return output.getvalue()


def _time(moment: datetime) -> str:
    local = moment.astimezone(ZONE)
    return f"{local:%d.%m.%Y %H:%M:%S} ({moment.astimezone(ZONE).tzname()}), {moment.isoformat()}"


def _wrapped(text: str, font: str, size: float, width: float) -> list[str]:
    """`text` cut into lines that fit `width`, at spaces where it can, anywhere if not."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        current = ""
        for word in paragraph.split(" "):
            candidate = f"{current} {word}" if current else word
            if pdfmetrics.stringWidth(candidate, font, size) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
            while pdfmetrics.stringWidth(word, font, size) > width:
                cut = len(word)
                while cut > 1 and pdfmetrics.stringWidth(word[:cut], font, size) > width:
                    cut -= 1
                lines.append(word[:cut])
                word = word[cut:]
            current = word
        lines.append(current)
    return lines
