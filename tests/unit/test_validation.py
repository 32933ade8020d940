"""validate_message: the product's rules for a submitted message, whatever the transport."""

from __future__ import annotations

import dataclasses

import pytest

from soap_service.domain.model import (
    MIB,
    AttachmentDraft,
    Language,
    MessageDraft,
    MessageLimits,
    MessageType,
    ValidMessage,
)
from soap_service.domain.validation import validate_message
from soap_service.errors import (
    AttachmentRejected,
    InvalidAddress,
    MessageTooLarge,
    ValidationError,
)

LIMITS = MessageLimits()
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"


def draft(**changes: object) -> MessageDraft:
    base = MessageDraft(
        reference="payroll-2024-05-0001",
        type=MessageType.CONFIDENTIAL,
        recipients=("alice@example.com",),
        subject="Your payslip for May",
        text_body="Please find your payslip attached.",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def attachment(
    filename: str = "payslip.pdf", content_type: str = "application/pdf", content: bytes = PDF
) -> AttachmentDraft:
    return AttachmentDraft(filename=filename, content_type=content_type, content=content)


def validate(message: MessageDraft, limits: MessageLimits = LIMITS) -> ValidMessage:
    return validate_message(message, limits, Language.DE)


# A plain message and its defaults.


def test_a_plain_message_is_accepted_with_defaults_applied() -> None:
    valid = validate(draft())

    assert valid == ValidMessage(
        reference="payroll-2024-05-0001",
        type=MessageType.CONFIDENTIAL,
        recipients=("alice@example.com",),
        subject="Your payslip for May",
        text_body="Please find your payslip attached.",
        html_body=None,
        attachments=(),
        language=Language.DE,
        expiry_days=7,
    )


def test_the_default_language_is_the_services_unless_the_sender_gives_one() -> None:
    assert validate_message(draft(), LIMITS, Language.FR).language is Language.FR
    assert validate_message(draft(language=Language.IT), LIMITS, Language.FR).language is (
        Language.IT
    )


def test_an_empty_html_body_counts_as_none() -> None:
    assert validate(draft(html_body="")).html_body is None
    assert validate(draft(html_body="<p>Hi</p>")).html_body == "<p>Hi</p>"


# Recipients.


@pytest.mark.parametrize(
    ("recipients", "position"),
    [
        (("not-an-address",), 1),
        (("alice@example.com", "bob@"), 2),
        (("alice@example.com", "bob@example.com", "carol at example.com"), 3),
        (("alice@example.com", "a b@example.com"), 2),
        (("alice@example.com", "bob@localhost"), 2),
        (("alice@example.com", ""), 2),
    ],
)
def test_a_bad_address_is_refused_with_its_position(
    recipients: tuple[str, ...], position: int
) -> None:
    with pytest.raises(
        InvalidAddress, match=rf"^Recipient {position} is not a valid e-mail address: "
    ) as caught:
        validate(draft(recipients=recipients))
    assert caught.value.code == "Client.InvalidAddress"


def test_an_internationalised_domain_is_accepted() -> None:
    valid = validate(draft(recipients=("bob@bücher.ch", "zoë@example.com")))
    assert valid.recipients == ("bob@bücher.ch", "zoë@example.com")


def test_duplicates_are_folded_case_insensitively_keeping_the_first_and_the_order() -> None:
    valid = validate(
        draft(
            recipients=(
                "Carol@Example.com",
                "alice@example.com",
                "carol@example.com",
                "  ALICE@EXAMPLE.COM ",
                "bob@bücher.ch",
                "bob@xn--bcher-kva.ch",  # the same domain, spelt in punycode
                "dave@example.com",
            )
        )
    )
    assert valid.recipients == (
        "Carol@example.com",
        "alice@example.com",
        "bob@bücher.ch",
        "dave@example.com",
    )


def test_a_message_needs_a_recipient() -> None:
    with pytest.raises(ValidationError, match=r"at least one recipient"):
        validate(draft(recipients=()))


def test_100_recipients_are_accepted_and_101_refused() -> None:
    hundred = tuple(f"user{number}@example.com" for number in range(100))
    assert len(validate(draft(recipients=hundred)).recipients) == 100

    with pytest.raises(ValidationError, match=r"at most 100 recipients") as caught:
        validate(draft(recipients=(*hundred, "one.more@example.com")))
    assert type(caught.value) is ValidationError


def test_the_recipient_limit_counts_after_folding_duplicates() -> None:
    hundred = tuple(f"user{number}@example.com" for number in range(100))
    valid = validate(draft(recipients=(*hundred, "USER0@example.com", "user99@EXAMPLE.com")))
    assert len(valid.recipients) == 100


# Subject, reference and bodies.


def test_subject_of_255_characters_is_accepted_and_256_refused() -> None:
    assert validate(draft(subject="s" * 255)).subject == "s" * 255
    with pytest.raises(ValidationError, match=r"^Subject is longer than 255 characters$"):
        validate(draft(subject="s" * 256))


@pytest.mark.parametrize(
    "subject",
    [
        "Payslip\nBcc: everyone@example.com",
        "Payslip\r",
        "Payslip\x00",
        "Payslip\u2028May",  # line separator
        "Payslip \u202egpj.exe",  # right-to-left override
        "Payslip \u2066May",  # left-to-right isolate
    ],
)
def test_subject_with_line_breaks_control_or_bidi_characters_is_refused(subject: str) -> None:
    with pytest.raises(ValidationError, match=r"^Subject must not contain line breaks"):
        validate(draft(subject=subject))


@pytest.mark.parametrize("subject", ["", "   "])
def test_empty_subject_is_refused(subject: str) -> None:
    with pytest.raises(ValidationError, match=r"^Subject must not be empty$"):
        validate(draft(subject=subject))


def test_reference_rules() -> None:
    assert validate(draft(reference="r" * 100)).reference == "r" * 100
    with pytest.raises(ValidationError, match=r"^Reference is longer than 100 characters$"):
        validate(draft(reference="r" * 101))
    with pytest.raises(ValidationError, match=r"^Reference must not be empty$"):
        validate(draft(reference=""))
    with pytest.raises(ValidationError, match=r"^Reference must not contain line breaks"):
        validate(draft(reference="a\nb"))


def test_a_body_of_1_mib_is_accepted_and_one_byte_more_refused() -> None:
    assert len(validate(draft(text_body="x" * MIB)).text_body) == MIB
    with pytest.raises(MessageTooLarge, match=r"^TextBody is 1048577 bytes in UTF-8; the limit"):
        validate(draft(text_body="x" * (MIB + 1)))


def test_the_body_limit_counts_utf8_bytes_not_characters() -> None:
    # 524289 characters of two bytes each: under the limit in characters, over it in bytes.
    with pytest.raises(MessageTooLarge, match=r"^TextBody is 1048578 bytes"):
        validate(draft(text_body="é" * (MIB // 2 + 1)))


def test_the_html_body_has_the_same_limit() -> None:
    with pytest.raises(MessageTooLarge, match=r"^HtmlBody is 1048577 bytes"):
        validate(draft(html_body="x" * (MIB + 1)))


# Attachments: count and size.


def test_20_attachments_are_accepted_and_21_refused() -> None:
    twenty = tuple(attachment(filename=f"payslip-{number}.pdf") for number in range(20))
    assert len(validate(draft(attachments=twenty)).attachments) == 20

    with pytest.raises(ValidationError, match=r"^a message can have at most 20 attachments$"):
        validate(draft(attachments=(*twenty, attachment(filename="one-more.pdf"))))


def test_attachments_of_exactly_30_mib_are_accepted() -> None:
    content = PDF + b"\0" * (30 * MIB - len(PDF))
    valid = validate(draft(attachments=(attachment(content=content),)))
    assert valid.attachment_bytes == 30 * MIB


def test_attachments_of_30_mib_and_one_byte_are_refused() -> None:
    first = PDF + b"\0" * (20 * MIB - len(PDF))
    second = PDF + b"\0" * (10 * MIB + 1 - len(PDF))
    with pytest.raises(
        MessageTooLarge,
        match=r"^the attachments are 31457281 bytes in total; the limit is 31457280 bytes",
    ) as caught:
        validate(draft(attachments=(attachment(content=first), attachment(content=second))))
    assert caught.value.code == "Client.MessageTooLarge"


def test_the_attachment_limit_comes_from_the_limits() -> None:
    limits = MessageLimits(max_attachment_bytes=100)
    exactly = attachment(content=PDF + b"\0" * (100 - len(PDF)))
    assert validate(draft(attachments=(exactly,)), limits).attachment_bytes == 100
    one_more = attachment(content=PDF + b"\0" * (101 - len(PDF)))
    with pytest.raises(MessageTooLarge, match=r"the attachments are 101 bytes in total"):
        validate(draft(attachments=(one_more,)), limits)


def test_an_empty_attachment_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"^Attachment 2 is empty$"):
        validate(draft(attachments=(attachment(), attachment(filename="b.pdf", content=b""))))


# Attachments: names and content types.


@pytest.mark.parametrize(
    "filename",
    [
        "../payslip.pdf",
        "folder/payslip.pdf",
        "C:\\Users\\payslip.pdf",
        "pay\x00slip.pdf",
        "pay\nslip.pdf",
        "pay\tslip.pdf",
        "pay\u202efdp.exe",
    ],
)
def test_file_names_with_folders_or_control_characters_are_refused(filename: str) -> None:
    with pytest.raises(
        ValidationError, match=r"^Attachment 1: FileName must be a plain file name"
    ) as caught:
        validate(draft(attachments=(attachment(filename=filename),)))
    assert type(caught.value) is ValidationError


@pytest.mark.parametrize("filename", ["", "   ", ".", ".."])
def test_empty_file_names_are_refused(filename: str) -> None:
    with pytest.raises(ValidationError, match=r"^Attachment 1: FileName must not be empty$"):
        validate(draft(attachments=(attachment(filename=filename),)))


def test_file_name_length_limit() -> None:
    long_name = "p" * 251 + ".pdf"
    assert validate(draft(attachments=(attachment(filename=long_name),))).attachments[
        0
    ].filename == (long_name)
    with pytest.raises(ValidationError, match=r"FileName is longer than 255 characters"):
        validate(draft(attachments=(attachment(filename="p" + long_name),)))


def test_file_names_are_trimmed_and_nfc_normalised() -> None:
    decomposed = "  Lohnabrechnung Ju\u0308rg.pdf "
    valid = validate(draft(attachments=(attachment(filename=decomposed),)))
    assert valid.attachments[0].filename == "Lohnabrechnung J\u00fcrg.pdf"


@pytest.mark.parametrize(
    "content_type",
    [
        "pdf",
        "",
        "application/",
        "application/pdf/x",
        "text/plain; charset",
        "text/plain\r\nX-Injected: 1",
        "text /plain",
        "application/" + "x" * 250,
    ],
)
def test_bad_content_types_are_refused(content_type: str) -> None:
    with pytest.raises(ValidationError, match=r"^Attachment 1: ContentType must be a media type"):
        validate(draft(attachments=(attachment(content_type=content_type),)))


@pytest.mark.parametrize(
    ("content_type", "normalised"),
    [
        ("application/pdf", "application/pdf"),
        (" Application/PDF ", "application/pdf"),
        ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),
        ('text/plain; charset="UTF-8"', 'text/plain; charset="utf-8"'),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", None),
    ],
)
def test_good_content_types_are_accepted_in_lower_case(
    content_type: str, normalised: str | None
) -> None:
    valid = validate(draft(attachments=(attachment(content_type=content_type),)))
    assert valid.attachments[0].content_type == (normalised or content_type)


def test_a_blocked_attachment_is_refused_by_position_without_quoting_it() -> None:
    attachments = (attachment(), attachment(filename="Setup.EXE", content=b"harmless"))
    with pytest.raises(
        AttachmentRejected, match=r"^Attachment 2 is refused: files of type \.exe are not allowed$"
    ):
        validate(draft(attachments=attachments))


def test_a_program_renamed_to_pdf_is_refused_by_content() -> None:
    program = b"\x7fELF\x02\x01\x01" + b"\0" * 57
    with pytest.raises(
        AttachmentRejected, match=r"^Attachment 1 is refused: its content is a Linux"
    ):
        validate(draft(attachments=(attachment(content=program),)))


# Expiry.


@pytest.mark.parametrize(("days", "expected"), [(None, 7), (1, 1), (7, 7), (30, 30)])
def test_expiry_days_in_range(days: int | None, expected: int) -> None:
    assert validate(draft(expiry_days=days)).expiry_days == expected


@pytest.mark.parametrize("days", [0, -1, 31, 365])
def test_expiry_days_out_of_range_are_refused(days: int) -> None:
    with pytest.raises(ValidationError, match=r"^ExpiryDays must be between 1 and 30 days$"):
        validate(draft(expiry_days=days))


def test_expiry_limits_and_default_come_from_the_limits() -> None:
    limits = MessageLimits(min_expiry_days=2, max_expiry_days=10, default_expiry_days=3)
    assert validate(draft(), limits).expiry_days == 3
    with pytest.raises(ValidationError, match=r"between 2 and 10 days"):
        validate(draft(expiry_days=1), limits)


def test_a_part_before_the_at_longer_than_64_characters_is_refused() -> None:
    assert validate(draft(recipients=("a" * 64 + "@example.ch",))).recipients
    with pytest.raises(InvalidAddress, match=r"^Recipient 1 .*too long before the @-sign\.$"):
        validate(draft(recipients=("a" * 65 + "@example.ch",)))


@pytest.mark.parametrize(
    "address",
    ["anna<secret>@example.ch", "anna@exa mple.ch", "anna@xn--secret-.ch", "a..secret@example.ch"],
)
def test_the_reason_for_a_bad_address_does_not_quote_it(address: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        validate(draft(recipients=("ok@example.ch", address)))
    message = caught.value.message
    assert message.startswith("Recipient 2 is not a valid e-mail address: ")
    assert "secret" not in message and "<" not in message
    assert message.endswith(".")
