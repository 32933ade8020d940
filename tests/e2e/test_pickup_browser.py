"""The pickup page in a real browser (Debian's chromium, headless, driven by Playwright):
send through SOAP, let a real worker deliver to a real SMTP server, take the link from the
notification that arrived, and open the message as a recipient does."""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import zeep
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import html as lxml_html
from sqlalchemy import create_engine, update

from soap_service.persistence.tables import MessageRow
from tests.e2e.stack import Stack, new_reference
from tests.smtp_sink import ReceivedMail, SmtpSink
from tests.support import TlsFiles

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PDF = b"%PDF-1.4\n% a payslip\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
CSV = b"Lohnart;Betrag\nGrundlohn;7'000.00\n"


def spki_pin(certificate_chain: Path) -> str:
    """The server certificate's public key hash, which chromium is told to trust: the
    test CA is trusted for this one certificate only, not with a blanket exception."""
    certificate = x509.load_pem_x509_certificate(certificate_chain.read_bytes())
    key = certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(key).digest()).decode()


@pytest.fixture(scope="module")
def browser(tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: `make test` installs it (tests/debian-packages.sh)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--ignore-certificate-errors-spki-list={spki_pin(tls.server_cert)}",
            ],
        )
        yield launched
        launched.close()


def assert_signed(pdf: bytes, certificate: Path) -> None:
    """A valid, intact signature over the whole file, by the given certificate."""
    from pyhanko.keys import load_cert_from_pemder
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    [signature] = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    context = ValidationContext(trust_roots=[load_cert_from_pemder(str(certificate))])
    # In a thread of its own: pyHanko runs an event loop, and Playwright's is running here.
    with ThreadPoolExecutor(max_workers=1) as thread:
        status = thread.submit(validate_pdf_signature, signature, context).result()
    assert (status.intact, status.valid, status.trusted, status.coverage.name) == (
        True,
        True,
        True,
        "ENTIRE_FILE",
    )


def pdf_text(pdf: bytes) -> str:
    import pypdf

    return " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def read_link(mail: EmailMessage) -> str:
    html_part = mail.get_body(preferencelist=("html",))
    assert html_part is not None
    links = lxml_html.fromstring(html_part.get_content()).xpath("//a/@href")
    assert len(set(links)) == 1, links
    return links[0]


def attachment_page(mail: EmailMessage) -> str:
    """The notification's message.html (inside its signed part)."""
    [part] = [p for p in mail.walk() if p.get_filename() == "message.html"]
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def send_payslip(stack: Stack, message_type: str = "confidential", subject: str = "") -> str:
    result = stack.client.service.SendMessage(
        Message={
            "Reference": new_reference(),
            "Type": message_type,
            "Recipients": {"Recipient": [{"Address": "anna.muster@example.ch"}]},
            "Subject": subject or "Lohnabrechnung November",
            "TextBody": "Guten Tag\nIhre Lohnabrechnung liegt bei.",
            "HtmlBody": '<p>Guten Tag</p><img src="https://tracker.example/p.gif">'
            "<p><b>Nettolohn:</b> CHF 6'543.21</p>",
            "Attachments": {
                "Attachment": [
                    {
                        "FileName": "Lohn-2026-11.pdf",
                        "ContentType": "application/pdf",
                        "Content": PDF,
                    },
                    {"FileName": "Lohnarten.csv", "ContentType": "text/csv", "Content": CSV},
                ]
            },
            "Language": "de",
        }
    )
    return result.MessageId


def payslip_delivered(
    stack: Stack, sink: SmtpSink, message_type: str = "confidential", subject: str = ""
) -> tuple[str, ReceivedMail]:
    """Send a payslip and wait until it is sent: its message id and the mail that arrived."""
    message_id = send_payslip(stack, message_type, subject)
    stack.wait_all(message_id, "sent")
    [mail] = [
        m
        for m in sink.received
        if m.recipients == ("anna.muster@example.ch",)
        and m.message_id.startswith(f"<{message_id}.")
    ]
    return message_id, mail


def test_a_recipient_opens_the_message_from_the_notification_and_downloads_its_attachments(
    delivering: tuple[Stack, SmtpSink], browser: Any, tmp_path: Path
) -> None:
    stack, sink = delivering
    message_id = send_payslip(stack)
    [recipient] = stack.wait_all(message_id, "sent")
    [mail] = [m for m in sink.received if m.recipients == ("anna.muster@example.ch",)]
    link = read_link(mail.message)
    assert link.startswith(f"{stack.service.url.rsplit('/soap/', 1)[0]}/m/")

    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    remote: list[str] = []
    page.on(
        "request", lambda request: remote.append(request.url) if "tracker" in request.url else None
    )
    response = page.goto(link)
    assert response is not None and response.status == 200
    assert page.locator("#subject").inner_text() == "Lohnabrechnung November"
    # The formatted body the sender wrote; the plain text one on request, and back.
    assert "Nettolohn: CHF 6'543.21" in page.locator("#html-body").inner_text()
    assert page.locator("#html-body img").count() == 0
    assert page.locator("#text-body").count() == 0
    with page.expect_navigation():
        page.get_by_role("link", name="Als reinen Text anzeigen").click()
    assert page.locator("#text-body").inner_text() == "Guten Tag\nIhre Lohnabrechnung liegt bei."
    assert page.locator("#html-body").count() == 0
    with page.expect_navigation():
        page.get_by_role("link", name="Formatierte Fassung anzeigen").click()
    assert page.url == link
    assert page.locator("#html-body").count() == 1
    assert remote == []  # nothing was loaded from the sender's tracker

    downloads = {}
    for name in ("Lohn-2026-11.pdf", "Lohnarten.csv"):
        with page.expect_download() as waiting:
            page.get_by_text(name, exact=True).click()
        download = waiting.value
        target = tmp_path / download.suggested_filename
        download.save_as(target)
        downloads[download.suggested_filename] = target.read_bytes()
    assert downloads == {"Lohn-2026-11.pdf": PDF, "Lohnarten.csv": CSV}

    # GetStatus tells the sender: opened, and when.
    status = stack.client.service.GetStatus(MessageId=message_id)
    [opened] = status.Recipients.Recipient
    assert opened.State == "opened"
    assert isinstance(opened.StateChangedAt, datetime)
    assert opened.StateChangedAt >= recipient.StateChangedAt
    assert [kind for kind, _ in stack.journal(message_id, 1)] == ["queued", "sent", "opened"]
    context.close()


def test_the_notifications_html_attachment_opens_the_same_page(
    delivering: tuple[Stack, SmtpSink], browser: Any, tmp_path: Path
) -> None:
    stack, sink = delivering
    message_id, mail = payslip_delivered(stack, sink)
    saved = tmp_path / "Nachricht.html"
    saved.write_text(attachment_page(mail.message), encoding="utf-8")

    context = browser.new_context()
    page = context.new_page()
    page.goto(saved.as_uri())  # the recipient opens the attachment from the mail program
    with page.expect_navigation():
        page.locator("a").first.click()
    assert page.url == read_link(mail.message)
    assert page.locator("#subject").inner_text() == "Lohnabrechnung November"
    assert stack.wait_all(message_id, "opened")
    context.close()


def test_the_notification_fits_a_phone_and_its_attachment_stands_on_its_own_offline(
    delivering: tuple[Stack, SmtpSink], browser: Any, tmp_path: Path
) -> None:
    stack, sink = delivering
    _, mail = payslip_delivered(stack, sink, "registered", "Lohnabrechnung Dezember")
    link = read_link(mail.message)
    body = mail.message.get_body(("html",))
    assert body is not None
    # Mail programs show the HTML body in a column about as wide as the phone, or less.
    for width in (320, 360, 390):
        context = browser.new_context(viewport={"width": width, "height": 700})
        page = context.new_page()
        page.set_content(body.get_content())
        assert page.get_by_role("link", name=link).is_visible()
        shoot(page, f"notification-de-{width}")
        context.close()

    saved = tmp_path / "message.html"
    saved.write_text(attachment_page(mail.message), encoding="utf-8")
    context = browser.new_context(viewport={"width": 390, "height": 700})
    context.set_offline(True)  # no network: the page must still say it all
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(saved.as_uri())
    page.wait_for_timeout(1500)  # a forwarding page would have gone by now
    assert page.url == saved.as_uri()
    assert requests == [saved.as_uri()]
    text = page.locator("body").inner_text()
    sender = stack.username  # the account's organisation: its name here
    assert f"Sichere Nachricht von {sender} (Gesichert durch soap-service)" in text
    assert f"{sender} hat Ihnen eine eingeschriebene Nachricht gesendet." in text
    assert "muss sie bis dahin angenommen werden" in text
    assert "Internetverbindung" in text
    assert page.get_by_role("link", name="Lesen").get_attribute("href") == link
    assert page.get_by_role("link", name=link).is_visible()
    shoot(page, "notification-attachment-offline-de-phone")
    context.close()


def test_a_tampered_link_shows_a_plain_page_in_the_readers_language(
    delivering: tuple[Stack, SmtpSink], browser: Any
) -> None:
    stack, sink = delivering
    message_id, mail = payslip_delivered(stack, sink)
    link = read_link(mail.message)
    tampered = link[:-1] + ("A" if link[-1] != "A" else "B")

    context = browser.new_context(locale="fr-CH")
    page = context.new_page()
    response = page.goto(tampered)
    assert response is not None and response.status == 404
    assert page.locator("#notice").inner_text() == "Lien non valable"
    assert "Lohnabrechnung" not in page.content()
    context.close()
    assert [r.State for r in stack.recipients(message_id)] == ["sent"]


def test_a_withdrawn_message_shows_that_it_was_withdrawn(
    delivering: tuple[Stack, SmtpSink], browser: Any
) -> None:
    stack, sink = delivering
    message_id, mail = payslip_delivered(stack, sink)
    cancelled = stack.client.service.CancelMessage(MessageId=message_id)
    assert [r.State for r in cancelled.Recipients.Recipient] == ["cancelled"]

    context = browser.new_context(locale="de-CH")
    page = context.new_page()
    response = page.goto(read_link(mail.message))
    assert response is not None and response.status == 410
    assert page.locator("#notice").inner_text() == "Nachricht zurückgezogen"
    assert "Lohnabrechnung" not in page.content()
    context.close()
    assert [r.State for r in stack.recipients(message_id)] == ["cancelled"]


def test_an_expired_link_shows_that_the_message_expired(
    delivering: tuple[Stack, SmtpSink], browser: Any
) -> None:
    stack, sink = delivering
    message_id, mail = payslip_delivered(stack, sink)
    # A week passes: the message's expiry moves into the past (the one thing a test
    # cannot wait for); the worker's expiry sweep then finds it.
    engine = create_engine(stack.service.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(MessageRow)
                .where(MessageRow.id == message_id)
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
    finally:
        engine.dispose()

    context = browser.new_context(locale="it-CH")
    page = context.new_page()
    response = page.goto(read_link(mail.message))
    assert response is not None and response.status == 410
    # A genuine link speaks the message's language, whatever the browser prefers.
    assert page.locator("#notice").inner_text() == "Nachricht abgelaufen"
    # Which message it was (its sender, its subject, when it came), never its content.
    assert page.locator("#about-from").inner_text() == stack.username
    assert page.locator("#about-subject").inner_text() == "Lohnabrechnung November"
    assert "Ihre Lohnabrechnung liegt bei" not in page.content()
    assert "Lohn-2026-11.pdf" not in page.content()
    context.close()
    stack.start_worker(sink, "sweeper")  # a worker sweeps for expired messages as it starts
    assert stack.wait_all(message_id, "expired")


# Personal and registered messages.

PASSWORD = "Sommer im Engadin 2026"


def register_in(page: Any, password: str = PASSWORD) -> None:
    assert page.locator("#register").count() == 1
    page.fill("#password", password)
    page.fill("#repeated", password)
    page.check("#consent")
    with page.expect_navigation():
        page.get_by_role("button", name="Registrieren und öffnen").click()


def log_in(page: Any, password: str = PASSWORD) -> None:
    assert page.locator("#login").count() == 1
    page.fill("#password", password)
    with page.expect_navigation():
        page.get_by_role("button", name="Anmelden").click()


def test_personal_messages_register_once_then_log_in(
    delivering: tuple[Stack, SmtpSink], browser: Any
) -> None:
    stack, sink = delivering
    first_id, first = payslip_delivered(stack, sink, "personal", "Lohnabrechnung Oktober")
    second_id, second = payslip_delivered(stack, sink, "personal", "Lohnabrechnung November")

    context = browser.new_context()
    page = context.new_page()
    page.goto(read_link(first.message))
    assert "Lohnabrechnung" not in page.content()  # nothing before registering
    register_in(page)
    assert page.locator("#subject").inner_text() == "Lohnabrechnung Oktober"
    assert page.locator("#account").inner_text() == "Angemeldet als anna.muster@example.ch"
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["__Host-pickup-session"]
    assert (session["secure"], session["httpOnly"], session["sameSite"]) == (True, True, "Lax")
    context.close()

    # Another day, another browser: the second message asks to log in.
    context = browser.new_context()
    page = context.new_page()
    page.goto(read_link(second.message))
    page.fill("#password", "not my password")
    with page.expect_navigation():
        page.get_by_role("button", name="Anmelden").click()
    assert page.locator("#error").inner_text() == "Das Passwort ist falsch."
    log_in(page)
    assert page.locator("#subject").inner_text() == "Lohnabrechnung November"
    # A second registration through this link is refused, and the password stays.
    response = page.goto(read_link(second.message) + "/register")
    assert response is not None and response.status == 409
    assert page.locator("#notice").inner_text() == "Bereits registriert"
    context.close()

    for message_id in (first_id, second_id):
        [recipient] = stack.recipients(message_id)
        assert recipient.State == "opened"


def test_a_registered_message_is_accepted_or_refused_in_the_browser(
    delivering: tuple[Stack, SmtpSink], browser: Any
) -> None:
    stack, sink = delivering
    accept_id, to_accept = payslip_delivered(stack, sink, "registered", "Kündigung")
    refuse_id, to_refuse = payslip_delivered(stack, sink, "registered", "Mahnung")

    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.goto(read_link(to_accept.message))
    register_in(page)
    assert page.locator("#decide").inner_text() == "Eingeschriebene Nachricht"
    assert page.locator("#subject").inner_text() == "Kündigung"
    assert "Lohnabrechnung liegt bei" not in page.content()  # no content before accepting
    with page.expect_navigation():
        page.get_by_role("button", name="Annehmen und öffnen").click()
    assert "Nettolohn: CHF 6'543.21" in page.locator("#html-body").inner_text()
    with page.expect_download() as waiting:
        page.get_by_text("Lohn-2026-11.pdf", exact=True).click()
    assert Path(waiting.value.path()).read_bytes() == PDF

    page.goto(read_link(to_refuse.message))
    assert page.locator("#subject").inner_text() == "Mahnung"
    with page.expect_navigation():
        page.get_by_role("button", name="Ablehnen").click()
    assert page.locator("#refuse-confirm").inner_text() == "Nachricht ablehnen?"
    with page.expect_navigation():
        page.get_by_role("button", name="Ja, ablehnen").click()
    assert page.locator("#notice").inner_text() == "Nachricht abgelehnt"
    context.close()

    [accepted] = stack.recipients(accept_id)
    [refused] = stack.recipients(refuse_id)
    assert (accepted.State, refused.State) == ("accepted", "refused")
    assert isinstance(accepted.StateChangedAt, datetime)
    assert [kind for kind, _ in stack.journal(refuse_id, 1)] == ["queued", "sent", "refused"]

    # The sender's proof: signed receipts through GetReceipt, checked by pyHanko against
    # the service's receipt certificate.
    certificate = stack.service.data_dir / "keys" / "receipts.pem"
    for kind, message_id in (
        ("submission", accept_id),
        ("pickup", accept_id),
        ("refusal", refuse_id),
    ):
        receipt = stack.client.service.GetReceipt(
            Kind=kind,
            MessageId=message_id,
            RecipientAddress=None if kind == "submission" else "anna.muster@example.ch",
        )
        assert (receipt.Kind, receipt.MessageId, receipt.ContentType) == (
            kind,
            message_id,
            "application/pdf",
        )
        assert_signed(receipt.Content, certificate)
        assert message_id in pdf_text(receipt.Content)
    with pytest.raises(zeep.exceptions.Fault) as not_due:
        stack.client.service.GetReceipt(
            Kind="pickup", MessageId=refuse_id, RecipientAddress="anna.muster@example.ch"
        )
    assert str(not_due.value.code).endswith("Client.NotFound")


def test_a_form_whose_csrf_token_was_removed_is_refused(
    delivering: tuple[Stack, SmtpSink], browser: Any
) -> None:
    stack, sink = delivering
    message_id, mail = payslip_delivered(stack, sink, "personal")
    context = browser.new_context()
    page = context.new_page()
    page.goto(read_link(mail.message))
    page.locator("input[name=csrf]").evaluate("field => field.remove()")
    page.fill("#password", PASSWORD)
    page.fill("#repeated", PASSWORD)
    page.check("#consent")
    with page.expect_navigation():
        page.get_by_role("button", name="Registrieren und öffnen").click()
    assert page.locator("#notice").inner_text() == "Formular abgelaufen"
    context.close()
    # Nothing was registered: the link still asks to register.
    page = browser.new_context().new_page()
    page.goto(read_link(mail.message))
    assert page.locator("#register").count() == 1
    page.context.close()
    assert [r.State for r in stack.recipients(message_id)] == ["sent"]


SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
WIDTHS = {"desktop": 1280, "phone": 390}


@contextmanager
def page_in(browser: Any) -> Iterator[Any]:
    """A page in a new browser context (German, desktop), closed afterwards."""
    context = browser.new_context(locale="de-CH")
    try:
        yield context.new_page()
    finally:
        context.close()


def shoot(page: Any, name: str) -> None:
    """A full-page screenshot for a reviewer (var/screenshots/), and the check that the
    page fits its width: nothing scrolls sideways on a 390 px phone."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    width = page.viewport_size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width, name


def test_every_pickup_page_fits_a_phone_and_a_desktop_in_each_language(
    delivering: tuple[Stack, SmtpSink], browser: Any
) -> None:
    stack, sink = delivering
    _, confidential = payslip_delivered(stack, sink, "confidential", "Lohnabrechnung Dezember")
    _, personal = payslip_delivered(stack, sink, "personal", "Lohnausweis 2026")
    message_link, personal_link = read_link(confidential.message), read_link(personal.message)
    headings = {"de": "Registrieren", "fr": "Inscription", "it": "Registrazione", "en": "Register"}
    zones = {"de": " MEZ", "fr": " UTC+1", "it": " CET", "en": " CET"}
    sizes = {"de": "(57 Byte)", "fr": "(57\u202fo)", "it": "(57 byte)", "en": "(57 byte)"}
    for device, width in WIDTHS.items():
        context = browser.new_context(viewport={"width": width, "height": 800}, locale="de-CH")
        page = context.new_page()
        for language, heading in headings.items():
            page.goto(f"{message_link}?lang={language}")
            assert page.locator("html").get_attribute("lang") == language
            assert page.locator("#subject").inner_text() == "Lohnabrechnung Dezember"
            # Sizes and times in the page's language too, not the message's (German):
            # 57 bytes, the test's PDF; sent in December, in Swiss winter time.
            assert page.locator(".size").first.inner_text() == sizes[language]
            assert page.locator("#received").inner_text().endswith(zones[language])
            shoot(page, f"pickup-message-{language}-{device}")
            page.goto(f"{personal_link}?lang={language}")
            assert page.locator("#register").inner_text() == heading
            shoot(page, f"pickup-register-{language}-{device}")
        page.goto(message_link[:-1] + ("A" if message_link[-1] != "A" else "B"))
        assert page.locator("#notice").inner_text() == "Link ungültig"
        shoot(page, f"pickup-notice-de-{device}")
        context.close()


def test_a_person_logs_in_on_the_site_and_opens_a_message_from_the_inbox(
    delivering: tuple[Stack, SmtpSink], browser: Any
) -> None:
    stack, sink = delivering
    message_id, mail = payslip_delivered(stack, sink, "personal", "Lohnabrechnung Januar")
    site = read_link(mail.message).split("/m/", 1)[0]
    # The address's account: registered through a personal link (earlier tests here may
    # have done it already).
    context = browser.new_context(locale="de-CH")
    page = context.new_page()
    page.goto(read_link(mail.message) + "?lang=en")
    if page.locator("#register").count():
        page.goto(read_link(mail.message))
        register_in(page)
    context.close()

    for device, width in WIDTHS.items():
        context = browser.new_context(viewport={"width": width, "height": 800}, locale="de-CH")
        page = context.new_page()
        page.goto(f"{site}/account")
        assert page.url == f"{site}/account/login"
        shoot(page, f"account-login-de-{device}")
        page.fill("#address", "anna.muster@example.ch")
        page.fill("#password", PASSWORD)
        with page.expect_navigation():
            page.get_by_role("button", name="Anmelden").click()
        assert page.url == f"{site}/account"
        assert page.locator("#inbox").inner_text() == "Ihre Nachrichten"
        assert "Lohnabrechnung Januar" in page.locator("#entries").inner_text()
        shoot(page, f"account-inbox-de-{device}")
        context.close()

    with page_in(browser) as page:
        page.goto(f"{site}/account/login")
        page.fill("#address", "anna.muster@example.ch")
        page.fill("#password", PASSWORD)
        with page.expect_navigation():
            page.get_by_role("button", name="Anmelden").click()
        with page.expect_navigation():
            page.get_by_text("Lohnabrechnung Januar", exact=True).click()
        assert page.locator("#subject").inner_text() == "Lohnabrechnung Januar"
        with page.expect_navigation():
            page.get_by_role("button", name="Abmelden").click()
    [recipient] = stack.recipients(message_id)
    assert recipient.State == "opened"


def test_the_login_and_decision_pages_fit_a_phone_and_a_desktop(
    delivering: tuple[Stack, SmtpSink], browser: Any
) -> None:
    stack, sink = delivering
    _, registered = payslip_delivered(stack, sink, "registered", "Kündigung per Ende März")
    link = read_link(registered.message)
    with page_in(browser) as page:  # the address's account, if no earlier test made it
        page.goto(link)
        if page.locator("#register").count():
            register_in(page)
    for device, width in WIDTHS.items():
        context = browser.new_context(viewport={"width": width, "height": 800}, locale="de-CH")
        page = context.new_page()
        page.goto(link)
        shoot(page, f"pickup-login-de-{device}")
        log_in(page)
        assert page.locator("#decide").inner_text() == "Eingeschriebene Nachricht"
        # When it came and until when, in Swiss time with the zone.
        assert page.locator(".times").inner_text().count("MEZ") == 2
        shoot(page, f"pickup-decide-de-{device}")
        context.close()
