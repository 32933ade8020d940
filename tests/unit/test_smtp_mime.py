"""Reading a submitted mail's MIME (pure logic): bodies, attachments at any depth, names
and charsets as mail programs write them, the subject's type prefix, and what is refused."""

from __future__ import annotations

import email.policy
from email.message import EmailMessage

import pytest

from soap_service.domain.model import AttachmentDraft, Language, MessageType
from soap_service.domain.organisations import sends_from
from soap_service.smtp.mime import BrokenMime, EncryptedMail, UnannouncedEightBit, read_mail
from soap_service.smtp.recipients import secure_recipient
from soap_service.smtp.replies import with_enhanced_code


def crlf(text: str) -> bytes:
    return text.strip("\n").replace("\n", "\r\n").encode("utf-8") + b"\r\n"


def read(message: EmailMessage) -> object:
    return read_mail(message.as_bytes(policy=email.policy.SMTP), smtputf8=False)


def test_text_and_html_alternative_with_a_nested_attachment_and_an_inline_image() -> None:
    raw = crlf(
        """
Subject: =?iso-8859-1?q?Lohnabrechnung_M=E4rz?=
Message-ID: <run-7.42@payroll.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/related; boundary="related"

--related
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Gr=FCezi Anna
--alt
Content-Type: text/html; charset=windows-1252

<p>Gr{u}ezi <img src="cid:logo"></p>
--alt--
--related
Content-Type: image/png
Content-ID: <logo>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--related--
--outer
Content-Type: multipart/mixed; boundary="deeper"

--deeper
Content-Type: application/pdf
Content-Disposition: attachment; filename*=utf-8''Lohn%20M%C3%A4rz.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQ=
--deeper--
--outer--
"""
    ).replace(b"{u}", "ü".encode("cp1252"))
    mail = read_mail(raw, smtputf8=False)
    assert mail.subject == "Lohnabrechnung März"
    assert mail.message_id == "run-7.42@payroll.example"
    assert mail.type is MessageType.CONFIDENTIAL
    assert mail.text_body == "Grüezi Anna"
    assert mail.html_body == '<p>Grüezi <img src="cid:logo"></p>'
    assert mail.attachments == (
        AttachmentDraft(
            filename="attachment-1.png", content_type="image/png", content=b"\x89PNG\r\n\x1a\n"
        ),
        AttachmentDraft(
            filename="Lohn März.pdf", content_type="application/pdf", content=b"%PDF-1.4"
        ),
    )


@pytest.mark.parametrize(
    ("subject", "message_type", "rest"),
    [
        ("Payslip", MessageType.CONFIDENTIAL, "Payslip"),
        ("<c> Payslip", MessageType.CONFIDENTIAL, "Payslip"),
        ("<p>Payslip", MessageType.PERSONAL, "Payslip"),
        ("  <R>  Payslip <c>", MessageType.REGISTERED, "Payslip <c>"),
        ("Re: <r> Payslip", MessageType.CONFIDENTIAL, "Re: <r> Payslip"),
    ],
)
def test_the_subject_prefix_chooses_the_type_and_is_removed(
    subject: str, message_type: MessageType, rest: str
) -> None:
    message = EmailMessage()
    message["Subject"] = subject
    message.set_content("x")
    mail = read(message)
    assert (mail.type, mail.subject) == (message_type, rest)  # type: ignore[attr-defined]


def test_rfc_2047_attachment_names_forwarded_mails_and_signatures() -> None:
    raw = crlf(
        """
Subject: Fwd
MIME-Version: 1.0
Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary="s"

--s
Content-Type: multipart/mixed; boundary="m"

--m
Content-Type: text/plain; charset=utf-8

See below.
--m
Content-Type: application/octet-stream; name="=?utf-8?b?w6TDtsO8LnR4dA==?="
Content-Transfer-Encoding: base64

aGk=
--m
Content-Type: message/rfc822

Subject: Inner
From: a@b.ch

Inner body
--m--
--s
Content-Type: application/pkcs7-signature; name=smime.p7s
Content-Transfer-Encoding: base64

MIAGCSqGSIb3DQEHAqCAMIACAQEx
--s--
"""
    )
    mail = read_mail(raw, smtputf8=False)
    assert mail.text_body == "See below."
    names = [(a.filename, a.content_type) for a in mail.attachments]
    assert names == [
        ("äöü.txt", "application/octet-stream"),
        ("attachment-2.eml", "message/rfc822"),
    ]
    assert mail.attachments[1].content.startswith(b"Subject: Inner")


def test_html_only_and_a_folder_in_the_file_name() -> None:
    raw = crlf(
        """
Subject: x
Content-Type: multipart/mixed; boundary="m"

--m
Content-Type: text/html; charset=utf-8

<p>Hello</p>
--m
Content-Type: application/pdf; name="../../payroll/out/slip.pdf"

%PDF
--m--
"""
    )
    mail = read_mail(raw, smtputf8=False)
    assert (mail.text_body, mail.html_body) == ("", "<p>Hello</p>")
    assert mail.attachments[0].filename == "slip.pdf"


def test_unknown_and_mislabelled_charsets_are_read_not_refused() -> None:
    raw = crlf("Subject: x\nContent-Type: text/plain; charset=x-unknown-42\n\nhello")
    assert read_mail(raw, smtputf8=False).text_body == "hello"
    latin = b"Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGr\xfcezi\r\n"
    assert read_mail(latin, smtputf8=False).text_body == "Grüezi"


def test_language_and_expiry_headers() -> None:
    raw = crlf("Subject: x\nContent-Language: it-CH, de\nX-Expiry-Days: 14\n\nciao")
    mail = read_mail(raw, smtputf8=False)
    assert (mail.language, mail.expiry_days) == (Language.IT, 14)
    other = read_mail(crlf("Subject: x\nContent-Language: es\n\nhola"), smtputf8=False)
    assert (other.language, other.expiry_days) == (None, None)


@pytest.mark.parametrize(
    ("raw", "error", "reason"),
    [
        (b"", BrokenMime, "the message is empty"),
        (b"Subject: x\r\n\r\n", BrokenMime, "the message has no body and no attachment"),
        (
            crlf(
                "Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n"
                "--b\nContent-Type: text/plain\n\nhi"
            ),
            BrokenMime,
            "the MIME structure is broken: a multipart is not closed (truncated?)",
        ),
        (
            crlf("Subject: x\nContent-Type: multipart/mixed; boundary=b\n\nno parts at all"),
            BrokenMime,
            "the MIME structure is broken: a multipart's boundary never appears",
        ),
        (
            crlf(
                "Subject: x\nContent-Type: application/pdf\n"
                "Content-Transfer-Encoding: base64\n\nJVBER*i0x"
            ),
            BrokenMime,
            "a part's base64 is broken: invalid InvalidBase64Characters",
        ),
        ("Subject: März\r\n\r\nx\r\n".encode(), UnannouncedEightBit, "8-bit characters"),
        (b"Subject: x\rBcc: e@vil.ch\r\n\r\nx\r\n", BrokenMime, "bare CR or LF"),
        (
            crlf(
                "Subject: x\n"
                "Content-Type: application/x-pkcs7-mime; smime-type=enveloped-data\n\nMIA="
            ),
            EncryptedMail,
            "encrypted",
        ),
    ],
)
def test_what_is_refused_and_why(raw: bytes, error: type[Exception], reason: str) -> None:
    with pytest.raises(error) as caught:
        read_mail(raw, smtputf8=False)
    assert reason in str(caught.value)


def test_nesting_and_part_counts_are_bounded() -> None:
    deep = "Subject: x\nContent-Type: multipart/mixed; boundary=b0\n\n"
    for level in range(1, 15):
        deep += f"--b{level - 1}\nContent-Type: multipart/mixed; boundary=b{level}\n\n"
    deep += "--b14\nContent-Type: text/plain\n\nhi\n"
    for level in range(14, -1, -1):
        deep += f"--b{level}--\n"
    with pytest.raises(BrokenMime, match="nested more than 12 deep"):
        read_mail(crlf(deep), smtputf8=False)
    many = "Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n"
    many += "--b\nContent-Type: text/plain\n\nhi\n" * 201 + "--b--\n"
    with pytest.raises(BrokenMime, match="more than 200 MIME parts"):
        read_mail(crlf(many), smtputf8=False)


def test_8bit_headers_are_read_with_smtputf8() -> None:
    mail = read_mail("Subject: März\r\n\r\nx\r\n".encode(), smtputf8=True)
    assert mail.subject == "März"


@pytest.mark.parametrize(
    ("address", "secure"),
    [
        ("anna@example.ch.incamail.ch", "anna@example.ch"),
        ("anna@example.ch.IncaMail.CH", "anna@example.ch"),
        ("anna@example.ch", "anna@example.ch"),
        ("anna@incamail.ch", "anna@incamail.ch"),  # the suffix alone names no domain
        ("anna@notincamail.ch", "anna@notincamail.ch"),
    ],
)
def test_the_suffix_names_the_secure_recipient(address: str, secure: str) -> None:
    assert secure_recipient(address, ".incamail.ch") == secure


@pytest.mark.parametrize(
    ("reply", "enhanced"),
    [
        ("250 OK", "250 2.0.0 OK"),
        ("503 Error: need RCPT command", "503 5.5.1 need RCPT command"),
        ("501 Syntax: MAIL FROM: <address>", "501 5.5.4 Syntax: MAIL FROM: <address>"),
        (
            "530 Must issue a STARTTLS command first",
            "530 5.7.0 Must issue a STARTTLS command first",
        ),
        ("552 Error: Too much mail data", "552 5.3.4 Message too big: the limit is 100 bytes"),
        (
            "535 5.7.8 Authentication credentials invalid",
            "535 5.7.8 Authentication credentials invalid",
        ),
        ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
    ],
)
def test_aiosmtpds_replies_get_enhanced_codes(reply: str, enhanced: str) -> None:
    assert with_enhanced_code(reply, size_limit=100) == enhanced


def test_a_part_bomb_stops_at_the_limit_without_parsing_the_rest() -> None:
    bomb = b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    bomb += b"--b\r\n\r\n" * 200_000 + b"--b--\r\n"
    # Raised by the parser's 201st part (the count is kept while it parses), not after it
    # has made all 200,000.
    with pytest.raises(BrokenMime, match="more than 200 MIME parts"):
        read_mail(bomb, smtputf8=False)


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    deep = b"Subject: x\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"
    for level in range(1, 3000):
        deep += b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (
            level - 1,
            level,
        )
    with pytest.raises(BrokenMime):
        read_mail(deep, smtputf8=False)


def test_a_header_bomb_is_refused() -> None:
    bomb = b"Subject: x\r\n" + b"X-Filler: y\r\n" * 5000 + b"\r\nbody\r\n"
    with pytest.raises(BrokenMime, match="more than 2000 header lines"):
        read_mail(bomb, smtputf8=False)


def test_expiry_days_take_ascii_digits_only() -> None:
    for value in ("=?utf-8?q?=C2=B2?=", "=?utf-8?q?=D9=A3?="):  # ² and Arabic-Indic 3
        raw = crlf(f"Subject: x\nX-Expiry-Days: {value}\n\nbody")
        with pytest.raises(BrokenMime, match="X-Expiry-Days must be a whole number"):
            read_mail(raw, smtputf8=False)


def test_utf8_file_names_are_read_as_utf8() -> None:
    raw = (
        "Subject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        "--b\r\nContent-Type: application/pdf\r\n"
        'Content-Disposition: attachment; filename="Lohn_März.pdf"\r\n\r\n%PDF\r\n'
        "--b--\r\n"
    ).encode()
    mail = read_mail(raw, smtputf8=True)
    assert [a.filename for a in mail.attachments] == ["Lohn_März.pdf"]


def test_every_from_and_sender_counts_and_the_message_id_loses_its_comment() -> None:
    raw = crlf(
        "From: hr@firm.example\nFrom: =?utf-8?q?ceo=40other.example?= <ceo@other.example>\n"
        "Sender: bot@firm.example\nSubject: x\nMessage-ID: <a@b.example> (the first)\n\nbody"
    )
    mail = read_mail(raw, smtputf8=False)
    assert mail.from_addresses == ("hr@firm.example", "ceo@other.example", "bot@firm.example")
    assert mail.message_id == "a@b.example"


@pytest.mark.parametrize(
    "header",
    [
        "hr@firm.example <ceo@other.example>",
        "HR <hr@firm.example> <ceo@other.example>",
        "hr@firm.example@other.example",
        "",
    ],
)
def test_a_from_that_is_not_readable_never_passes_for_the_organisations_own(header: str) -> None:
    """Python 3.11 reads some of these as several addresses and 3.13 reads none: on both,
    an organisation sending only from firm.example may not send them."""
    raw = crlf(f"From: {header}\nSubject: x\n\nbody")
    mail = read_mail(raw, smtputf8=False)
    assert mail.from_addresses  # an empty tuple would pass any check
    assert not all(sends_from(("firm.example",), address) for address in mail.from_addresses)
