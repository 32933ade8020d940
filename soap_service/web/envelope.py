"""Parsing a SOAP 1.1 envelope within the guard's limits (guard.py says what they are),
for a plain request's body and an MTOM request's root part alike: the prolog is checked
for a DOCTYPE before the parser gets a byte, the body is fed to a pull parser block by
block, and each element is checked as it completes, so a hostile request stops the
reading at once.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, TypeAlias

from lxml import etree

from soap_service.errors import (
    ForbiddenXml,
    MalformedRequest,
    MessageTooLarge,
    UnsupportedMediaType,
    VersionMismatch,
)
from soap_service.soap.faults import SOAP11_ENV

SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
BLOCK_BYTES = 256 * 1024
PROLOG_BYTES = 64 * 1024

# A charset parameter as the email package reads it: an RFC 2231 value (charset*=) comes
# as a (charset, language, value) tuple, which _new_parser refuses as unknown.
Charset: TypeAlias = str | tuple[str | None, str | None, str] | None


@dataclass(frozen=True, kw_only=True)
class GuardLimits:
    """What one request may cost before anyone has looked at its credentials."""

    max_request_bytes: int
    # Decoded bytes of all base64 elements (attachments) together.
    max_binary_bytes: int
    # The elements holding base64 content, as {namespace}name.
    binary_tags: frozenset[str] = frozenset()
    # A SendMessage with 100 recipients and 20 attachments has under 500 elements; each
    # costs the parser about 120 bytes, so this bounds a hostile tree to a few MB.
    max_elements: int = 50_000
    max_depth: int = 64
    max_attributes: int = 64


@dataclass(frozen=True)
class GuardedRequest:
    """A request that passed the guard: the SOAP 1.1 Envelope, and the MTOM parts its
    attachment elements referred to (by element path; empty for inline base64)."""

    envelope: etree._Element
    binary_parts: dict[str, bytes] = field(default_factory=dict)
    mtom: bool = False


def parse_envelope(
    stream: BinaryIO, length: int | None, charset: Charset, limits: GuardLimits
) -> tuple[etree._Element, Callable[[], int]]:
    """Parse an envelope from `stream` within the limits; it, and how to count the decoded
    size of its inline base64 content (a pass over the text: only MTOM needs it)."""
    parser = _TreeWatcher(_new_parser(charset), limits)
    received = 0
    prolog_checked = False
    pending = b""
    while True:
        want = BLOCK_BYTES if length is None else min(BLOCK_BYTES, length - received)
        block = stream.read(want) if want > 0 else b""
        if block:
            received += len(block)
            if received > limits.max_request_bytes:
                raise MessageTooLarge(too_large(limits.max_request_bytes))
        if not prolog_checked:
            pending += block
            if len(pending) < PROLOG_BYTES and block:
                continue
            if not pending.strip():
                raise MalformedRequest("the request body is empty")
            _refuse_doctype(pending)
            prolog_checked = True
            block, pending = pending, b""
        if not block:
            break
        parser.feed(block)
    if length is not None and received < length:
        raise MalformedRequest("the request body is shorter than its Content-Length")
    root = parser.close()
    if root.getroottree().docinfo.internalDTD is not None:  # defence in depth
        raise ForbiddenXml("DOCTYPE declarations are not allowed")
    _check_envelope(root)
    return root, parser.binary_bytes


class _TreeWatcher:
    """Feeds the parser and checks each element as it completes, so that a hostile tree
    or too many attachment bytes stop the reading at once rather than after it."""

    def __init__(self, parser: etree.XMLPullParser, limits: GuardLimits) -> None:
        self._parser = parser
        self._limits = limits
        self._elements = 0
        self._depth = 0
        # Base64 elements seen, and an upper bound of their decoded size: the exact size
        # costs passes over the text, worth it only near the limit. Once there, each
        # element's exact size is counted once, as it completes.
        self._binaries: list[etree._Element] = []
        self._binary_bound = 0
        self._binary_exact: int | None = None

    def feed(self, data: bytes) -> None:
        try:
            self._parser.feed(data)
        except etree.XMLSyntaxError as exc:
            raise _not_well_formed(exc) from None
        self._check_events()

    def close(self) -> etree._Element:
        try:
            root = self._parser.close()
        except etree.XMLSyntaxError as exc:
            raise _not_well_formed(exc) from None
        self._check_events()
        return root

    def _check_events(self) -> None:
        limits = self._limits
        # Only "start" and "end" events are asked for (_new_parser); comparing the event's
        # kind, rather than unpacking it, tells the type checker each carries an element.
        for event in self._parser.read_events():
            if event[0] == "start":
                element = event[1]
                self._elements += 1
                self._depth += 1
                if self._elements > limits.max_elements:
                    raise MalformedRequest(
                        f"the request has more than {limits.max_elements} elements"
                    )
                if self._depth > limits.max_depth:
                    raise MalformedRequest(
                        f"the request nests deeper than {limits.max_depth} levels"
                    )
                if len(element.attrib) > limits.max_attributes:
                    raise MalformedRequest(
                        f"an element has more than {limits.max_attributes} attributes"
                    )
            elif event[0] == "end":
                element = event[1]
                self._depth -= 1
                if element.tag in limits.binary_tags:
                    self._binaries.append(element)
                    if self._binary_exact is not None:
                        self._binary_exact += _decoded_size(element.text or "")
                        check_binary_total(self._binary_exact, limits)
                        continue
                    self._binary_bound += len(element.text or "") * 3 // 4
                    if self._binary_bound > limits.max_binary_bytes:
                        self._binary_exact = self.binary_bytes()
                        check_binary_total(self._binary_exact, limits)

    def binary_bytes(self) -> int:
        if self._binary_exact is not None:
            return self._binary_exact
        return sum(_decoded_size(element.text or "") for element in self._binaries)


def check_binary_total(total: int, limits: GuardLimits) -> None:
    limit = limits.max_binary_bytes
    if total > limit:
        raise MessageTooLarge(
            f"the attachments are {total} bytes or more in total; "
            f"the limit is {limit} bytes ({limit // 2**20} MiB)"
        )


def _decoded_size(text: str) -> int:
    """The bytes a base64 text decodes to (an estimate if it is not valid base64)."""
    characters = len(text) - sum(text.count(space) for space in " \t\r\n")
    stripped = text.rstrip()
    padding = len(stripped) - len(stripped.rstrip("="))
    return max(0, characters * 3 // 4 - padding)


def _new_parser(charset: Charset) -> etree.XMLPullParser:
    encoding = None
    if charset is not None and not isinstance(charset, str):  # e.g. RFC 2231 charset*=
        raise UnsupportedMediaType("the charset of the Content-Type is not known")
    if charset:
        try:
            normalised = codecs.lookup(charset).name
        except (LookupError, ValueError):
            raise UnsupportedMediaType("the charset of the Content-Type is not known") from None
        if normalised not in {"utf-8", "ascii"}:
            encoding = charset  # libxml2 knows the IANA names, not Python's aliases
    try:
        return etree.XMLPullParser(
            events=("start", "end"),
            encoding=encoding,
            resolve_entities=False,
            load_dtd=False,
            dtd_validation=False,
            no_network=True,
            huge_tree=True,
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
        )
    except (LookupError, ValueError):
        raise UnsupportedMediaType(f"the charset {charset!r:.40} is not supported") from None


def _not_well_formed(exc: etree.XMLSyntaxError) -> MalformedRequest:
    # Only the position: libxml2's message can quote the document.
    line, column = exc.position if exc.position else (0, 0)
    return MalformedRequest(f"the request is not well-formed XML (line {line}, column {column})")


def too_large(max_bytes: int) -> str:
    """Why a request over the size limit is refused, wherever the reading notices it."""
    return (
        f"the request is larger than {max_bytes} bytes; a message may carry at most "
        "30 MiB of attachments"
    )


# How the first bytes reveal the encoding (XML 1.0, appendix F), BOM or not.
_ENCODING_SIGNATURES = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (b"<\0\0\0", "utf-32-le"),
    (b"\0\0\0<", "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (b"<\0", "utf-16-le"),
    (b"\0<", "utf-16-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
)


def _prolog_text(head: bytes) -> str:
    encoding = next(
        (encoding for signature, encoding in _ENCODING_SIGNATURES if head.startswith(signature)),
        "latin-1",  # any ASCII-compatible charset spells "<!DOCTYPE" alike
    )
    return head.decode(encoding, errors="replace").lstrip("\ufeff")


def _refuse_doctype(head: bytes) -> None:
    """Walk the prolog (declaration, comments, processing instructions) to the root tag.

    A prolog is usually a few dozen bytes, and the head may hold a whole 50 KB attachment:
    the walk decodes a small window first and a larger one only if it has to."""
    size = 1024
    while True:
        complete = size >= len(head)
        text = _prolog_text(head[:size])
        if not complete:
            text = text[:-4]  # a character the window cut in two is not looked at
        if _prolog_walk(text, complete=complete):
            return
        if complete:
            if len(head) >= PROLOG_BYTES:
                # The prolog fills the whole window: what follows is unknown.
                raise MalformedRequest("the XML prolog is too long")
            return  # unterminated: the parser reports the syntax error
        size *= 8


def _prolog_walk(text: str, *, complete: bool) -> bool:
    """True once the walk reaches the root element (or something the parser will refuse);
    False if `text` ends before that. `complete`: nothing follows `text`."""
    position = 0
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        rest = text[position : position + 4]
        if not complete and len(rest) < 4 and "<!--".startswith(rest):
            return False  # the window may have cut "<!--" short
        if rest.startswith("<?"):
            terminator = "?>"
        elif rest.startswith("<!--"):
            terminator = "-->"
        elif rest.startswith("<!"):
            raise ForbiddenXml("DOCTYPE and entity declarations are not allowed")
        else:
            # The root element (or something the parser will refuse); or the text ended.
            return bool(rest)
        end = text.find(terminator, position)
        if end < 0:
            return False
        position = end + len(terminator)


def _check_envelope(root: etree._Element) -> None:
    if root.tag == f"{{{SOAP12_ENV}}}Envelope":
        raise VersionMismatch("SOAP 1.2 envelopes are not supported: use SOAP 1.1")
    if root.tag != f"{{{SOAP11_ENV}}}Envelope":
        raise MalformedRequest("the request is not a SOAP 1.1 Envelope")
    children = [child for child in root if isinstance(child.tag, str)]
    names = [etree.QName(child).localname for child in children]
    namespaces_ok = all(etree.QName(child).namespace == SOAP11_ENV for child in children)
    if not namespaces_ok or names not in (["Body"], ["Header", "Body"]):
        raise MalformedRequest("the Envelope must hold an optional Header and then one Body")
    body = children[-1]
    operations = [child for child in body if isinstance(child.tag, str)]
    if not operations:
        raise MalformedRequest("the SOAP Body is empty: it must hold one operation element")
    if len(operations) > 1:
        raise MalformedRequest("the SOAP Body must hold exactly one operation element")
    if (body.text or "").strip() or any((child.tail or "").strip() for child in operations):
        raise MalformedRequest("the SOAP Body must hold only the operation element")
