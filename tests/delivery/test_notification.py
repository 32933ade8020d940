"""The notification e-mail, parsed back with the `email` package: valid MIME in every
language and message type, the pickup link three times, nothing of the message itself,
S/MIME-signed (checked with `openssl smime -verify`), an attachment that needs no network."""

from __future__ import annotations

import base64
import email
import email.policy
import html
import re
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path

import pytest

from soap_service.crypto import MailSigner, WrappedKey, generate_mail_signing_certificate
from soap_service.delivery import notification as notification_module
from soap_service.delivery.notification import Notification, NotificationWriter
from soap_service.delivery.texts import KINDS, TEXTS
from soap_service.domain.delivery import DeliveryJob
from soap_service.domain.model import Language, MessageType
from soap_service.settings import OperatorIdentity
from tests.support import smime_verify

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
# 12:00 UTC is 13:00 in Zurich (CET) in March.
EXPIRES = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
BASE_URL = "https://pickup.example.ch/m/"
TOKEN = "q3bXw9Zc0A1-_fJ2kLmN4oPqRsTuVwXyZ0123456789"  # 43 base64url characters: 256 bits
URL = BASE_URL + TOKEN
ORGANISATION = "Müller & Söhne Treuhand AG"
SEALED_SUBJECT = b"\x01sealed-subject-bytes\x02"
MAIL_FROM = "no-reply@soap.example.ch"
OPERATOR = OperatorIdentity(
    name="Beispiel Post",
    address_lines=("Beispiel Post AG", "Wankdorfallee 4", "3030 Bern"),
    imprint_url="https://post.example.ch/impressum",
    privacy_url="https://post.example.ch/datenschutz",
)
SECURED = {
    Language.DE: "(Gesichert durch Beispiel Post)",
    Language.FR: "(Sécurisé par Beispiel Post)",
    Language.IT: "(Protetto da Beispiel Post)",
    Language.EN: "(Secured by Beispiel Post)",
}


def job(
    *,
    language: Language = Language.DE,
    type: MessageType = MessageType.CONFIDENTIAL,
    organisation: str = ORGANISATION,
    address: str = "anna.muster@example.ch",
    position: int = 1,
    show_subject: bool = False,
) -> DeliveryJob:
    return DeliveryJob(
        recipient_id=7,
        message_id="0b7c5a8e-3f2d-4c1b-9e8a-6d5f4c3b2a19",
        position=position,
        address=address,
        attempts=0,
        accepted_at=NOW,
        expires_at=EXPIRES,
        type=type,
        language=language,
        organisation=organisation,
        show_subject=show_subject,
        sealed_subject=SEALED_SUBJECT,
        data_key=WrappedKey(key_id="k1", wrapped=b"\x00" * 40),
    )


@pytest.fixture(scope="module")
def signing_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("signing")
    cert, key = folder / "mail-signing.pem", folder / "mail-signing-key.pem"
    generate_mail_signing_certificate(cert, key, address=MAIL_FROM)
    return cert, key


@pytest.fixture
def writer(signing_cert: tuple[Path, Path]) -> NotificationWriter:
    signer = MailSigner(*signing_cert)
    return NotificationWriter(
        mail_from=MAIL_FROM,
        hostname="soap.example.ch",
        pickup_base_url=BASE_URL,
        operator=OPERATOR,
        signer=lambda: signer,
    )


def parse(notification: Notification) -> EmailMessage:
    message = email.message_from_bytes(notification.data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def raw_headers(data: bytes) -> dict[str, str]:
    """The header block as sent, unfolded, each value still RFC 2047-encoded."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    unfolded = re.sub(r"\r\n(?=[ \t])", "", head)
    return dict(line.split(": ", 1) for line in unfolded.split("\r\n"))


def decoded(value: str) -> str:
    """An encoded header value decoded by RFC 2047 (adjacent encoded words joined)."""
    return str(make_header(decode_header(value)))


def parts(message: EmailMessage) -> tuple[EmailMessage, EmailMessage, EmailMessage]:
    """The text, the HTML and the attachment, after checking the exact MIME structure:
    multipart/signed around multipart/mixed (the bodies, then the attachment)."""
    assert message.get_content_type() == "multipart/signed"
    assert message.get_param("protocol") == "application/pkcs7-signature"
    assert message.get_param("micalg") == "sha-256"
    signed, signature = list(message.iter_parts())
    assert signature.get_content_type() == "application/pkcs7-signature"
    assert signature.get_filename() == "smime.p7s"
    assert signed.get_content_type() == "multipart/mixed"
    top = list(signed.iter_parts())
    assert len(top) == 2
    alternative, attachment = top
    assert alternative.get_content_type() == "multipart/alternative"
    inner = list(alternative.iter_parts())
    assert [part.get_content_type() for part in inner] == ["text/plain", "text/html"]
    text, body = inner
    assert attachment.get_content_type() == "text/html"
    assert isinstance(text, EmailMessage)
    assert isinstance(body, EmailMessage)
    assert isinstance(attachment, EmailMessage)
    return text, body, attachment


@pytest.mark.parametrize("type", list(MessageType))
@pytest.mark.parametrize("language", list(Language))
def test_every_language_and_type_is_valid_mime_with_the_link_three_times(
    writer: NotificationWriter, language: Language, type: MessageType
) -> None:
    notification = writer.write(
        job(language=language, type=type), token=TOKEN, subject=None, now=NOW
    )
    data = notification.data
    message = parse(notification)

    for part in message.walk():
        assert part.defects == [], (part.get_content_type(), part.defects)
    # Only CRLF line ends, nothing 8-bit, no line beyond RFC 5322's limit.
    assert re.search(rb"(?<!\r)\n", data) is None
    assert re.search(rb"\r(?!\n)", data) is None
    assert data.endswith(b"\r\n")
    assert data.isascii()
    assert max(len(line) for line in data.split(b"\r\n")) <= 998

    text, body, attachment = parts(message)
    assert text.get_content_charset() == "utf-8"
    assert body.get_content_charset() == "utf-8"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_filename() == "message.html"
    plain, markup, page = text.get_content(), body.get_content(), attachment.get_content()

    # The Read link: in the text, as the HTML button's href, and in the attachment.
    assert URL in plain.split()
    assert markup.count(f'href="{URL}"') == 2  # the button and the written-out link
    assert page.count(f'href="{URL}"') == 2
    assert "http-equiv" not in page  # it forwards nowhere: it says it all by itself

    words = TEXTS[language]
    kind = KINDS[language][type]
    intro = words["intro"].format(organisation=ORGANISATION, kind=kind)
    assert intro in plain
    assert html.escape(intro, quote=False) in markup
    assert html.escape(intro, quote=False) in page
    assert words["offline"].format(operator="Beispiel Post") in html.unescape(page)
    signed = words["signed"].format(operator="Beispiel Post")
    assert signed in plain
    assert signed in html.unescape(markup)
    # The operator: name, address and legal pages, in the mail and in the attachment.
    assert "Beispiel Post\nBeispiel Post AG\nWankdorfallee 4\n3030 Bern\n" in plain
    for markup_part in (markup, page):
        assert "Beispiel Post AG<br>Wankdorfallee 4<br>3030 Bern" in markup_part
        assert f'href="{OPERATOR.imprint_url}"' in markup_part
        assert f'href="{OPERATOR.privacy_url}"' in markup_part
        assert f">{words['imprint']}</a>" in markup_part
    assert f"{words['privacy']}: {OPERATOR.privacy_url}" in plain
    assert f'<html lang="{language.value}">' in markup
    assert f">{words['read']}</a>" in markup
    # As the pages write it: the language's own way, in Swiss time, saying which zone.
    expiry = {
        Language.DE: "09.03.2026, 13:00 MEZ",
        Language.FR: "9 mars 2026, 13:00 UTC+1",
        Language.IT: "9 mar 2026, 13:00 CET",
        Language.EN: "9 Mar 2026, 13:00 CET",
    }[language]
    assert words["until"].format(expiry=expiry) in plain
    assert (words["registered"] in plain) is (type is MessageType.REGISTERED)
    assert (words["registered"] in html.unescape(markup)) is (type is MessageType.REGISTERED)

    headers = raw_headers(data)
    title = words["subject"].format(organisation=ORGANISATION) + " " + SECURED[language]
    assert decoded(headers["Subject"]) == title
    assert str(message["Subject"]) == title
    assert decoded(headers["From"]) == f"{ORGANISATION} (Beispiel Post) <no-reply@soap.example.ch>"
    assert headers["Content-Language"] == language.value
    assert message["From"].addresses[0].addr_spec == "no-reply@soap.example.ch"
    assert headers["To"] == "<anna.muster@example.ch>"
    assert headers["Message-ID"] == "<0b7c5a8e-3f2d-4c1b-9e8a-6d5f4c3b2a19.1@soap.example.ch>"
    assert notification.message_id == headers["Message-ID"]
    assert headers["MIME-Version"] == "1.0"
    assert headers["Auto-Submitted"] == "auto-generated"
    assert message["Date"].datetime == NOW


def test_the_subject_is_shown_only_when_given(writer: NotificationWriter) -> None:
    subject = "Lohnabrechnung März 2026"
    with_subject = writer.write(job(show_subject=True), token=TOKEN, subject=subject, now=NOW)
    without = writer.write(job(), token=TOKEN, subject=None, now=NOW)

    title = f"Sichere Nachricht von {ORGANISATION}"
    secured = "(Gesichert durch Beispiel Post)"
    assert str(parse(with_subject)["Subject"]) == f"{title}: {subject} {secured}"
    assert str(parse(without)["Subject"]) == f"{title} {secured}"
    for part in parse(without).walk():
        if not part.is_multipart() and part.get_content_maintype() == "text":
            assert "Lohnabrechnung" not in part.get_content()
    assert SEALED_SUBJECT not in without.data


def test_a_subject_with_line_breaks_cannot_add_headers(writer: NotificationWriter) -> None:
    notification = writer.write(
        job(show_subject=True), token=TOKEN, subject="Lohn\r\nBcc: evil@example.org", now=NOW
    )
    message = parse(notification)
    assert message["Bcc"] is None
    assert b"\r\nBcc:" not in notification.data
    assert all(part.defects == [] for part in message.walk())
    assert str(message["Subject"]).endswith(": Lohn Bcc: evil@example.org " + SECURED[Language.DE])


def test_an_organisation_with_line_breaks_cannot_add_headers(
    writer: NotificationWriter,
) -> None:
    organisation = "Acme AG\r\nBcc: evil@example.org"
    notification = writer.write(job(organisation=organisation), token=TOKEN, subject=None, now=NOW)
    message = parse(notification)
    assert message["Bcc"] is None
    assert b"\r\nBcc:" not in notification.data
    assert all(part.defects == [] for part in message.walk())
    assert "Acme AG" in str(message["From"])
    assert message["From"].addresses[0].addr_spec == "no-reply@soap.example.ch"


def test_a_shown_subject_is_not_kept_in_memory_after_the_mail(writer: NotificationWriter) -> None:
    organisation = f"Cache {uuid.uuid4().hex} AG"  # a kind of notification not cached yet
    before = notification_module._bodies.cache_info()
    writer.write(
        job(organisation=organisation, show_subject=True), token=TOKEN, subject="Lohn", now=NOW
    )
    after = notification_module._bodies.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)
    # Without a subject, the same kind is rendered once and then reused.
    writer.write(job(organisation=organisation), token=TOKEN, subject=None, now=NOW)
    writer.write(job(organisation=organisation), token=TOKEN, subject=None, now=NOW)
    cached = notification_module._bodies.cache_info()
    assert (cached.hits, cached.misses) == (after.hits + 1, after.misses + 1)


def test_the_same_job_gets_the_same_message_id_and_link_every_time(
    writer: NotificationWriter,
) -> None:
    first = writer.write(job(), token=TOKEN, subject=None, now=NOW)
    again = writer.write(job(), token=TOKEN, subject=None, now=NOW + timedelta(hours=3))
    assert first.message_id == again.message_id
    assert parse(first)["Message-ID"] == parse(again)["Message-ID"]
    other = writer.write(job(position=2), token=TOKEN, subject=None, now=NOW)
    assert other.message_id != first.message_id


def test_an_organisation_with_markup_is_escaped_in_html(writer: NotificationWriter) -> None:
    organisation = '<script>alert("x")</script> & <b>Co</b>'
    notification = writer.write(job(organisation=organisation), token=TOKEN, subject=None, now=NOW)
    text, body, attachment = parts(parse(notification))
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;Co&lt;/b&gt;"
    for part in (body, attachment):
        markup = part.get_content()
        assert "<script" not in markup
        assert "<b>" not in markup
        assert escaped in markup
    # The plain text shows it as it is, and so do the headers (encoded, not markup).
    assert organisation in text.get_content()
    headers = raw_headers(notification.data)
    assert organisation in decoded(headers["Subject"])
    assert organisation in decoded(headers["From"])


def test_an_international_domain_is_written_in_idna_in_to(writer: NotificationWriter) -> None:
    notification = writer.write(
        job(address="anna@müller-straße.ch"), token=TOKEN, subject=None, now=NOW
    )
    headers = raw_headers(notification.data)
    assert headers["To"] == "<anna@xn--mller-strae-46a18a.ch>"
    assert notification.data.isascii()
    message = parse(notification)
    assert message["To"].addresses[0].domain == "xn--mller-strae-46a18a.ch"
    assert all(part.defects == [] for part in message.walk())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_verifies_the_signature_and_refuses_a_changed_notification(
    writer: NotificationWriter, signing_cert: tuple[Path, Path], tmp_path: Path
) -> None:
    data = writer.write(job(), token=TOKEN, subject=None, now=NOW).data
    certificate, _ = signing_cert
    verified = smime_verify(data, certificate, tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert b"Verification successful" in verified.stderr
    # What it covers: the whole multipart/mixed, bodies and attachment.
    signed = email.message_from_bytes(verified.stdout, policy=email.policy.default)
    assert signed.get_content_type() == "multipart/mixed"
    assert [part.get_content_type() for part in signed.walk()] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "text/html",
    ]
    # The certificate names the From address, which mail programs compare.
    assert MAIL_FROM.encode() in certificate_emails(certificate)

    # A link changed on the way (a phishing copy of a real notification) fails.
    text_part = parse_parts(data)[0]
    block = text_part.get_payload().strip().replace("\r\n", "\n").replace("\n", "\r\n").encode()
    assert block in data
    text = base64.b64decode(block).replace(TOKEN.encode(), b"x" * len(TOKEN))
    forged = data.replace(block, base64.encodebytes(text).replace(b"\n", b"\r\n").strip())
    assert forged != data
    refused = smime_verify(forged, certificate, tmp_path)
    assert refused.returncode != 0
    assert b"Verification successful" not in refused.stderr


def parse_parts(data: bytes) -> tuple[EmailMessage, EmailMessage, EmailMessage]:
    return parts(email.message_from_bytes(data, policy=email.policy.default))  # type: ignore[arg-type]


def certificate_emails(path: Path) -> bytes:
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return b" ".join(name.encode() for name in names.value.get_values_for_type(x509.RFC822Name))


def test_a_writer_without_a_signer_writes_the_same_mail_unsigned() -> None:
    unsigned = NotificationWriter(
        mail_from=MAIL_FROM,
        hostname="soap.example.ch",
        pickup_base_url=BASE_URL,
        operator=OPERATOR,
        signer=None,
    ).write(job(), token=TOKEN, subject=None, now=NOW)
    message = parse(unsigned)
    assert message.get_content_type() == "multipart/mixed"
    assert all(part.defects == [] for part in message.walk())
    assert b"pkcs7" not in unsigned.data
    plain = message.get_body(("plain",))
    assert plain is not None
    assert "digital signiert" not in plain.get_content()
