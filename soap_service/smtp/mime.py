"""Reading a submitted mail: its MIME form becomes the parts of a secure message.

The bodies are the parts a mail program would show (text, and HTML from a
multipart/alternative); every other leaf, at any depth, is an attachment, inline images
included, with its RFC 2047/2231 name. Text is decoded from any charset Python knows.
The subject's prefix `<c>`, `<p>` or `<r>` chooses the type (none: confidential).

What cannot become the same message is refused whole, with the reason: MIME whose structure
or transfer encoding is broken, 8-bit headers the client did not announce with SMTPUTF8,
and encrypted mail (S/MIME, PGP), which the service could only store unreadable.
"""

from __future__ import annotations

import email
import email.errors
import email.policy
import email.utils
import mimetypes
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser
from typing import Any

from soap_service.domain.model import AttachmentDraft, Language, MessageType
from soap_service.errors import SoapServiceError

# Bounds on the tree, far beyond real mail (a payslip is 2 to 4 parts): a hostile message
# must not cost more than a real one. Parts and headers are counted while the parser
# builds them, so that a bomb of a million empty parts stops at the 201st.
MAX_DEPTH = 12
MAX_PARTS = 200
MAX_HEADERS = 2000

_TYPE_PREFIX = re.compile(r"^\s*<([cpr])>\s*", re.IGNORECASE)
_TYPES = {"c": MessageType.CONFIDENTIAL, "p": MessageType.PERSONAL, "r": MessageType.REGISTERED}

# The header that sets how many days the recipients have (the account's default otherwise).
EXPIRY_HEADER = "X-Expiry-Days"

_ENCRYPTED_TYPES = frozenset(
    {"application/pkcs7-mime", "application/x-pkcs7-mime", "multipart/encrypted"}
)
# Signatures over the original MIME: they cannot verify once the message is re-packed.
_SIGNATURE_TYPES = frozenset(
    {"application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature"}
)
# Defects that mean the parts were not cut or decoded as the sender meant them.
_STRUCTURAL_DEFECTS = (
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.CloseBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.InvalidMultipartContentTransferEncodingDefect,
)
_ENCODING_DEFECTS = (
    email.errors.InvalidBase64PaddingDefect,
    email.errors.InvalidBase64CharactersDefect,
    email.errors.InvalidBase64LengthDefect,
)


class UnreadableMail(SoapServiceError):
    """The mail cannot become a secure message as it is; the message says why."""


class BrokenMime(UnreadableMail):
    """The MIME structure or a part's transfer encoding is broken."""


class EncryptedMail(UnreadableMail):
    """S/MIME- or PGP-encrypted content: the service cannot read it to deliver it."""


class UnannouncedEightBit(UnreadableMail):
    """8-bit header bytes from a client that did not announce SMTPUTF8."""


@dataclass(frozen=True, kw_only=True)
class SubmittedMail:
    """A mail's parts as the domain takes them; recipients come from the envelope."""

    message_id: str | None
    # The addresses in From (and Sender): who the mail says it is from.
    from_addresses: tuple[str, ...]
    type: MessageType
    subject: str
    text_body: str
    html_body: str | None
    attachments: tuple[AttachmentDraft, ...]
    language: Language | None
    expiry_days: int | None


def read_mail(raw: bytes, *, smtputf8: bool) -> SubmittedMail:
    _check_header_bytes(raw, smtputf8=smtputf8)
    try:
        return _read(raw)
    except UnreadableMail:
        raise
    except Exception as exc:
        # Whatever else the parser trips over, it would trip over again: refused for good
        # (a 4xx would make the MTA send the same mail for days).
        raise BrokenMime("the MIME structure cannot be read") from exc


def _read(raw: bytes) -> SubmittedMail:
    # compat32 keeps headers as the text they are: the structured header objects of
    # policy.default cost more than the rest of reading a payslip (profiled), and the few
    # headers needed here are decoded by _header.
    parser = BytesParser(_class=_bounded_message_class(), policy=email.policy.compat32)
    message = parser.parsebytes(raw)
    leaves = list(_leaves(message, depth=0))
    if any(leaf.get_content_type() in _ENCRYPTED_TYPES for leaf in leaves) or (
        message.get_content_type() in _ENCRYPTED_TYPES
    ):
        raise EncryptedMail(
            "the message is encrypted (S/MIME or PGP); the service cannot read it. Send it "
            "unencrypted: the connection is TLS and the service encrypts what it stores"
        )
    bodies = _bodies(leaves)
    text_body = _text_of(bodies[0]) if bodies[0] is not None else ""
    if text_body.lstrip().startswith("-----BEGIN PGP MESSAGE-----"):
        raise EncryptedMail("the message body is PGP-encrypted; the service cannot read it")
    html_body = _text_of(bodies[1]) if bodies[1] is not None else None
    attachments = tuple(
        _attachment(leaf, number)
        for number, leaf in enumerate(
            (
                leaf
                for leaf in leaves
                if not any(leaf is body for body in bodies)
                and leaf.get_content_type() not in _SIGNATURE_TYPES
            ),
            start=1,
        )
    )
    _check_defects(message)
    if not text_body.strip() and not html_body and not attachments:
        raise BrokenMime("the message has no body and no attachment")
    message_type, subject = _type_and_subject(_header(message, "Subject"))
    return SubmittedMail(
        message_id=_message_id(message),
        from_addresses=_authors(message),
        type=message_type,
        subject=subject,
        text_body=text_body,
        html_body=html_body,
        attachments=attachments,
        language=_language(message, *(body for body in bodies if body is not None)),
        expiry_days=_expiry_days(_header(message, EXPIRY_HEADER)),
    )


def _check_header_bytes(raw: bytes, *, smtputf8: bool) -> None:
    if not raw.strip():
        raise BrokenMime("the message is empty")
    end = raw.find(b"\r\n\r\n")
    headers = raw if end < 0 else raw[: end + 2]
    if not smtputf8 and not headers.isascii():
        raise UnannouncedEightBit(
            "the message has 8-bit characters in its headers without SMTPUTF8; encode "
            "them (RFC 2047) or announce SMTPUTF8 in MAIL FROM"
        )
    # A bare CR or LF would let one header line carry another (header injection).
    unbroken = headers.replace(b"\r\n", b"")
    if b"\r" in unbroken or b"\n" in unbroken:
        raise BrokenMime("a header line contains a bare CR or LF; lines end with CRLF")


def _bounded_message_class() -> type[Message]:
    """A Message class that counts the parts and headers the parser makes of one mail."""
    made = [0, 0]  # parts, headers

    class BoundedMessage(Message):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made[0] += 1
            if made[0] > MAX_PARTS + 2:  # the parser makes one message before it starts
                raise BrokenMime(f"the message has more than {MAX_PARTS} MIME parts")
            super().__init__(*args, **kwargs)

        def set_raw(self, name: str, value: str) -> None:
            made[1] += 1
            if made[1] > MAX_HEADERS:
                raise BrokenMime(f"the message has more than {MAX_HEADERS} header lines")
            super().set_raw(name, value)

    return BoundedMessage


def _leaves(part: Message, depth: int) -> Iterator[Message]:
    """Every part that is not a container, depth first; a forwarded mail is one leaf."""
    if depth > MAX_DEPTH:
        raise BrokenMime(f"the MIME parts are nested more than {MAX_DEPTH} deep")
    if part.get_content_maintype() == "multipart":
        children = part.get_payload()
        if not isinstance(children, list):
            return  # a multipart without parts: its defect is reported
        for child in children:
            if isinstance(child, Message):
                yield from _leaves(child, depth + 1)
    else:
        yield part


def _bodies(leaves: list[Message]) -> tuple[Message | None, Message | None]:
    """The text and HTML parts a mail program would show as the message: the first inline
    text/plain and text/html leaves (those of a multipart/alternative, in practice)."""
    text = html = None
    for leaf in leaves:
        if _is_attachment(leaf):
            continue
        content_type = leaf.get_content_type()
        if content_type == "text/plain" and text is None:
            text = leaf
        elif content_type == "text/html" and html is None:
            html = leaf
    return text, html


def _is_attachment(part: Message) -> bool:
    return part.get_content_disposition() == "attachment" or part.get_filename() is not None


def _check_defects(message: Message) -> None:
    """Checked after every part was decoded: a transfer encoding's defects show only then."""
    for part in message.walk():
        for defect in part.defects:
            if isinstance(defect, _STRUCTURAL_DEFECTS):
                raise BrokenMime(f"the MIME structure is broken: {_defect_text(defect)}")
            if isinstance(defect, _ENCODING_DEFECTS):
                raise BrokenMime(f"a part's base64 is broken: {_defect_text(defect)}")


def _defect_text(defect: email.errors.MessageDefect) -> str:
    names = {
        email.errors.NoBoundaryInMultipartDefect: "a multipart has no boundary",
        email.errors.StartBoundaryNotFoundDefect: "a multipart's boundary never appears",
        email.errors.CloseBoundaryNotFoundDefect: "a multipart is not closed (truncated?)",
        email.errors.MultipartInvariantViolationDefect: "a multipart has no parts",
    }
    return names.get(type(defect), "invalid " + type(defect).__name__.removesuffix("Defect"))


def _payload(part: Message) -> bytes:
    if part.get_content_maintype() == "message":
        # A forwarded mail (message/rfc822): kept as the .eml file it is.
        inner = part.get_payload(0)
        return bytes(inner) if isinstance(inner, email.message.Message) else b""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _text_of(part: Message) -> str:
    """The part's text as a SOAP client would send it: MIME's CRLF line ends as LF, and
    without the line break that ends a mail's last line."""
    return _decoded_text(part).replace("\r\n", "\n").rstrip("\n")


def _decoded_text(part: Message) -> str:
    data = _payload(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset)
    except LookupError:  # a charset Python does not know: read what UTF-8 can
        return data.decode("utf-8", errors="replace")
    except UnicodeDecodeError:
        # Mislabelled text is common (Windows-1252 sent as us-ascii or UTF-8).
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", errors="replace")


def _attachment(part: Message, number: int) -> AttachmentDraft:
    content_type = part.get_content_type()
    name = _filename(part)
    if name:
        # Some mail programs send the sender's folder too: keep the file's own name.
        name = re.split(r"[\\/]", name)[-1].strip()
    if not name:
        if content_type == "message/rfc822":
            extension = ".eml"
        else:
            extension = mimetypes.guess_extension(content_type, strict=False) or ".bin"
        name = f"attachment-{number}{extension}"
    return AttachmentDraft(filename=name, content_type=content_type, content=_payload(part))


def _filename(part: Message) -> str | None:
    """The part's file name: RFC 2231 and (non-standard, common) RFC 2047 decoded, and
    UTF-8 as such (compat32 would replace 8-bit bytes in a parameter)."""
    if not all(_raw_text(value).isascii() for _, value in part.raw_items()):
        utf8 = Message()
        for header, value in part.raw_items():
            if header.lower() in ("content-type", "content-disposition"):
                utf8[header] = _as_utf8(_raw_text(value))
        part = utf8
    try:
        filename = part.get_filename()
    except (ValueError, LookupError):  # a 2231 name in an unknown charset
        return None
    return _decoded_words(filename) if filename else None


def _raw_text(value: Any) -> str:
    """A raw header value, unfolded."""
    return re.sub(r"\r?\n(?=[ \t])", "", str(value))


def _as_utf8(text: str) -> str:
    """8-bit header bytes (kept by the parser as surrogate escapes) read as UTF-8."""
    return text.encode("ascii", "surrogateescape").decode("utf-8", "replace")


def _raw_values(message: Message, name: str) -> list[str]:
    wanted = name.lower()
    return [_raw_text(value) for key, value in message.raw_items() if key.lower() == wanted]


def _header(message: Message, name: str) -> str | None:
    """The first `name` header's text: unfolded, RFC 2047 words decoded, and UTF-8 as
    such (SMTPUTF8; the parser keeps 8-bit bytes as surrogate escapes)."""
    for text in _raw_values(message, name):
        return _decoded_words(text) if text.isascii() else _as_utf8(text)
    return None


def _decoded_words(text: str) -> str:
    """RFC 2047 encoded words decoded; an unknown charset or broken bytes read as UTF-8."""
    if "=?" not in text:
        return text
    try:
        chunks = decode_header(text)
    except email.errors.HeaderParseError:
        return text
    decoded = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            decoded.append(chunk)
            continue
        try:
            decoded.append(chunk.decode(charset or "ascii"))
        except (LookupError, UnicodeDecodeError):
            decoded.append(chunk.decode("utf-8", errors="replace"))
    return "".join(decoded)


def _type_and_subject(subject: str | None) -> tuple[MessageType, str]:
    subject = (subject or "").strip()
    match = _TYPE_PREFIX.match(subject)
    if match is None:
        return MessageType.CONFIDENTIAL, subject
    return _TYPES[match.group(1).lower()], subject[match.end() :]


def _authors(message: Message) -> tuple[str, ...]:
    """The addresses of every From and Sender header, parsed from the raw values (decoding
    encoded words first could make up addresses).

    A header with a part that is no readable address adds an empty one, which no
    organisation sends from. Python 3.13 parses strictly and reads nothing at all in
    `a@firm.example <b@other.example>`, where 3.11 read two addresses: either way, such a
    From cannot pass for one of the organisation's own."""
    authors: list[str] = []
    for name in ("From", "Sender"):
        for text in _raw_values(message, name):
            value = text if text.isascii() else _as_utf8(text)
            found = [address for _, address in email.utils.getaddresses([value])]
            if not found or not all(found):
                authors.append("")
            authors.extend(address for address in found if address)
    return tuple(authors)


_MSG_ID = re.compile(r"<([^<>\s]+)>")


def _message_id(message: Message) -> str | None:
    """The first Message-ID's id, without its brackets or any comment around it."""
    for text in _raw_values(message, "Message-ID"):
        found = _MSG_ID.search(text)
        value = found.group(1) if found else text.strip()
        return value if value and not any(c.isspace() for c in value) else None
    return None


def _language(*parts: Message) -> Language | None:
    """The first language of Content-Language that the service speaks (de-CH is de): the
    message's, else its body's (mail programs put it on either)."""
    for part in parts:
        for tag in (_header(part, "Content-Language") or "").split(","):
            primary = tag.strip().split("-", 1)[0].lower()
            if primary in {language.value for language in Language}:
                return Language(primary)
    return None


def _expiry_days(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not re.fullmatch(r"[0-9]{1,4}", value):
        raise BrokenMime(f"{EXPIRY_HEADER} must be a whole number of days")
    return int(value)
