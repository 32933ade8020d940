"""A receipt as a one- or more-page PDF (reportlab), before it is signed.

Plain and factual, in the message's language: what the receipt attests, then the
message's facts as a table of labels and values (a label too long for its column wraps
in it, never into the value), then the SHA-256 of each body and attachment, and who issued
it: the operator. The font is the Vera face that reportlab ships, embedded, so that names
and subjects in any Latin script print as given on every reader. The PDF's creation date
is the receipt's issue time.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import reportlab
from babel.support import NullTranslations
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from soap_service.catalogues import read_catalogues
from soap_service.display import display_time
from soap_service.domain.model import Language
from soap_service.domain.receipts import ReceiptFacts, ReceiptKind
from soap_service.settings import OperatorIdentity

LEFT, RIGHT, TOP, BOTTOM = 20 * mm, A4[0] - 20 * mm, A4[1] - 20 * mm, 20 * mm
LABEL_WIDTH = 46 * mm
GAP = 5 * mm  # between a label's column and its value's


@functools.cache
def _words() -> dict[Language, NullTranslations]:
    return read_catalogues()


def receipt_title(kind: ReceiptKind, language: Language) -> str:
    _ = _words()[language].gettext
    return {
        ReceiptKind.SUBMISSION: _("Submission receipt"),
        ReceiptKind.PICKUP: _("Pickup receipt"),
        ReceiptKind.REFUSAL: _("Refusal receipt"),
        ReceiptKind.EXPIRY: _("Expiry receipt"),
    }[kind]


def _attests(kind: ReceiptKind, _: Callable[[str], str]) -> str:
    return {
        ReceiptKind.SUBMISSION: _("The service accepted and stored this registered message."),
        ReceiptKind.PICKUP: _("The recipient accepted this registered message and could open it."),
        ReceiptKind.REFUSAL: _("The recipient refused this registered message."),
        ReceiptKind.EXPIRY: _(
            "The recipient neither accepted nor refused this registered message before it expired."
        ),
    }[kind]


def _event_label(kind: ReceiptKind, _: Callable[[str], str]) -> str:
    return {
        ReceiptKind.SUBMISSION: _("Accepted by the service"),
        ReceiptKind.PICKUP: _("Accepted by the recipient"),
        ReceiptKind.REFUSAL: _("Refused by the recipient"),
        ReceiptKind.EXPIRY: _("Expired"),
    }[kind]


@functools.cache
def _fonts() -> tuple[str, str]:
    folder = Path(reportlab.__file__).parent / "fonts"
    pdfmetrics.registerFont(TTFont("Vera", str(folder / "Vera.ttf")))
    pdfmetrics.registerFont(TTFont("VeraBd", str(folder / "VeraBd.ttf")))
    return "Vera", "VeraBd"


def render_receipt(facts: ReceiptFacts, operator: OperatorIdentity | None = None) -> bytes:
    operator = operator or OperatorIdentity()
    language = facts.language
    _ = _words()[language].gettext
    regular, bold = _fonts()
    title = receipt_title(facts.kind, language)
    output = io.BytesIO()
    page = canvas.Canvas(output, pagesize=A4, invariant=True, pageCompression=1)
    _created_at(page, facts.issued_at)
    page.setTitle(f"{title} {facts.message_id}")
    page.setAuthor(operator.name)
    page.setSubject(title)
    page.setCreator(operator.name)
    y = TOP

    def line(label: str, value: str, *, size: float = 9.5) -> None:
        """A row: the label in its column (wrapped there), then the value beside it (wrapped
        too, onto further pages if it must). Drawn label first, so that copied text and
        screen readers give the label whole before its value."""
        nonlocal y
        height = size * 1.45
        labels = _wrapped(label, bold, size, LABEL_WIDTH - GAP)
        values = _wrapped(value, regular, size, RIGHT - LEFT - LABEL_WIDTH)
        if y - height * (len(labels) - 1) < BOTTOM:
            page.showPage()
            y = TOP
        page.setFont(bold, size)
        for number, text in enumerate(labels):
            page.drawString(LEFT, y - number * height, text)
        below_labels = y - len(labels) * height
        page.setFont(regular, size)
        for text in values:
            if y < BOTTOM:
                page.showPage()
                page.setFont(regular, size)
                y, below_labels = TOP, TOP
            page.drawString(LEFT + LABEL_WIDTH, y, text)
            y -= height
        y = min(y, below_labels) - size * 0.35  # a little air between rows

    def time(moment: datetime) -> str:
        # As the person reads it, then exactly, in UTC.
        exact = moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        return f"{display_time(moment, language.value)} ({exact})"

    page.setFont(bold, 16)
    page.drawString(LEFT, y, title)
    y -= 9 * mm
    for text in _wrapped(_attests(facts.kind, _), regular, 10, RIGHT - LEFT):
        page.setFont(regular, 10)
        page.drawString(LEFT, y, text)
        y -= 10 * 1.45
    y -= 6 * mm

    line(_("Receipt"), facts.receipt_id)
    line(_("Issued"), time(facts.issued_at))
    line(_event_label(facts.kind, _), time(facts.event_at))
    y -= 3 * mm
    line(_("Message"), facts.message_id)
    line(_("Sender's reference"), facts.reference)
    line(
        _("Sender"),
        _("%(organisation)s (account %(account)s)")
        % {"organisation": facts.sender_organisation, "account": facts.sender_account},
    )
    line(
        _("Recipient") if len(facts.recipients) == 1 else _("Recipients"),
        ", ".join(facts.recipients),
    )
    line(_("Subject"), facts.subject)
    line(_("Submitted"), time(facts.accepted_at))
    line(_("Expires"), time(facts.expires_at))
    y -= 3 * mm
    line(_("SHA-256 of the text"), facts.text_body_sha256, size=8)
    if facts.html_body_sha256 is not None:
        line(_("SHA-256 of the HTML"), facts.html_body_sha256, size=8)
    for number, attachment in enumerate(facts.attachments, start=1):
        line(
            _("Attachment %(number)s") % {"number": number},
            _("%(name)s (%(size)s bytes)") % {"name": attachment.filename, "size": attachment.size},
        )
        line("SHA-256", attachment.sha256, size=8)
    y -= 6 * mm
    issuer = [
        _("Issued and signed by %(operator)s.") % {"operator": operator.name},
        *operator.address_lines,
    ]
    for text in issuer:
        if y < BOTTOM:
            page.showPage()
            y = TOP
        page.setFont(regular, 8)
        page.drawString(LEFT, y, text)
        y -= 8 * 1.45
    page.showPage()
    page.save()
    return output.getvalue()


def _created_at(page: canvas.Canvas, moment: datetime) -> None:
    """The document's creation date: when the receipt was issued. reportlab's invariant
    mode (the same bytes for the same facts) would write 2000-01-01; it reads the time from
    its time stamp, which is set here instead (reportlab has no setter for it)."""
    stamp = page._doc._timeStamp
    utc = moment.astimezone(UTC)
    stamp.t = utc.timestamp()
    stamp.lt = utc.timetuple()
    stamp.YMDhms = tuple(stamp.lt)[:6]
    stamp.dhh = stamp.dmm = 0
    stamp.tzname = "UTC"


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
