"""Parsing a SOAP 1.1 envelope within the guard's limits (guard.py says what they are),
for a plain request's body and an MTOM request's root part alike.

The body is read block by block and reaches the parser as UTF-8 (another charset is
transcoded as it arrives, so that what the parser reads is what was checked); the prolog
is checked for a DOCTYPE before the parser gets a byte; each block's markup is counted
before the parser gets it (markup.py); and each element is checked as it completes, so
a hostile request stops the reading at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

from lxml import etree

from soap_service.errors import (
    ForbiddenXml,
    MalformedRequest,
    MessageTooLarge,
    ServiceError,
    ValidationError,
    VersionMismatch,
)
from soap_service.soap.faults import SOAP11_ENV
from soap_service.web.encoding import Charset, Utf8, body_encoding, charset_encoding
from soap_service.web.markup import MarkupLimits, MarkupScan

SOAP12_ENV = "http://www.w3.org/2003/05/soap-envelope"
_HEADER = f"{{{SOAP11_ENV}}}Header"
BLOCK_BYTES = 256 * 1024
PROLOG_BYTES = 64 * 1024
FEED_BYTES = 32 * 1024


@dataclass(frozen=True, kw_only=True)
class GuardLimits:
    """What one request may cost before anyone has looked at its credentials."""

    max_request_bytes: int
    # Decoded bytes of all base64 elements (attachments) together.
    max_binary_bytes: int
    # The elements holding base64 content, as {namespace}name.
    binary_tags: frozenset[str] = frozenset()
    # Elements in the whole request (counted on the markup, before the parser sees it).
    max_elements: int = 50_000
    # Elements in the SOAP Header: a UsernameToken takes six, WS-Addressing a few more.
    max_header_elements: int = 64
    # Elements in the SOAP Body by its operation element's tag: what a valid request of
    # each holds at most (from the published schema); any other tag gets the largest.
    operation_elements: Mapping[str, int] = field(default_factory=dict)
    # Child elements of the operation element by its tag: the most a valid request holds,
    # and what they are called when refused ("Message elements"). A batch of 31,000 empty
    # entries fits the element bound; this stops it at the 101st, before it is all parsed.
    operation_children: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    max_depth: int = 64
    max_attributes: int = 64
    # Namespace declarations: clients declare a few, on the Envelope or the operation.
    max_element_namespaces: int = 32
    max_namespaces: int = 128
    # The longest start tag, attributes and all; a real one is well under 1 KB.
    max_tag_bytes: int = 64 * 1024
    # Distinct element names: the schema's few dozen, a client's headers, some prefixes.
    max_element_names: int = 256

    @classmethod
    def for_operations(
        cls,
        *,
        max_request_bytes: int,
        max_binary_bytes: int,
        binary_tags: frozenset[str],
        operation_elements: Mapping[str, int],
        operation_children: Mapping[str, tuple[int, str]] | None = None,
    ) -> GuardLimits:
        """The limits of a service whose operations hold at most `operation_elements`:
        no request holds more elements than the Envelope, its Header and the largest."""
        header = cls.max_header_elements
        return cls(
            max_request_bytes=max_request_bytes,
            max_binary_bytes=max_binary_bytes,
            binary_tags=binary_tags,
            operation_elements=operation_elements,
            operation_children=operation_children or {},
            max_elements=3 + header + max(operation_elements.values(), default=0),
        )

    def markup(self) -> MarkupLimits:
        return MarkupLimits(
            max_elements=self.max_elements,
            max_attributes=self.max_attributes,
            max_element_namespaces=self.max_element_namespaces,
            max_namespaces=self.max_namespaces,
            max_tag_bytes=self.max_tag_bytes,
            max_names=self.max_element_names,
        )


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
    declared = charset_encoding(charset)
    parser = _TreeWatcher(_new_parser(), limits)
    scan = MarkupScan(limits.markup())
    utf8: Utf8 | None = None  # once the prolog has told the encoding
    received = 0
    pending = b""
    while True:
        want = BLOCK_BYTES if length is None else min(BLOCK_BYTES, length - received)
        block = stream.read(want) if want > 0 else b""
        if block:
            received += len(block)
            if received > limits.max_request_bytes:
                raise MessageTooLarge(too_large(limits.max_request_bytes))
        if utf8 is None:
            pending += block
            if len(pending) < PROLOG_BYTES and block:
                continue
            if not pending.strip():
                raise MalformedRequest("the request body is empty")
            utf8 = Utf8(body_encoding(declared, pending))
            block, pending = utf8.decode(pending, final=not block), b""
            _refuse_doctype(block)
        else:
            block = utf8.decode(block, final=not block)
        if block:
            scan.feed(block)
            parser.feed(block)
        elif utf8.done:
            break
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
        # Elements inside the Header, or inside the Body's operation element, and their
        # bound (the operation's, once its element starts).
        self._section: str | None = None
        self._inside = 0
        self._section_limit = 0
        self._counting = False
        # The operation element's children, their bound and its refusal (none: no bound).
        self._operation = ""
        self._children = 0
        self._children_limit: tuple[int, str] | None = None
        # Base64 elements seen, and an upper bound of their decoded size: the exact size
        # costs passes over the text, worth it only near the limit. Once there, each
        # element's exact size is counted once, as it completes.
        self._binaries: list[etree._Element] = []
        self._binary_bound = 0
        self._binary_exact: int | None = None

    def feed(self, data: bytes) -> None:
        # A block in slices: a hostile one is refused after the slice that breaks a
        # limit, before the parser has built (and the refusal must free) the rest.
        for start in range(0, len(data), FEED_BYTES):
            self._feed(data[start : start + FEED_BYTES])

    def _feed(self, data: bytes) -> None:
        try:
            self._parser.feed(data)
            self._check_events()
        except etree.XMLSyntaxError as exc:
            self._drop_events()
            raise _not_well_formed(exc) from None
        except ServiceError:
            self._drop_events()
            raise

    def close(self) -> etree._Element:
        try:
            root = self._parser.close()
            self._check_events()
        except etree.XMLSyntaxError as exc:
            self._drop_events()
            raise _not_well_formed(exc) from None
        except ServiceError:
            self._drop_events()
            raise
        return root

    def _drop_events(self) -> None:
        """Read the events a refusal left unread: lxml's pull parser and its pending
        events form a reference cycle, and the elements of a refused slice would stay in
        memory until the cycle collector runs (a rare full collection, after gc.freeze)."""
        for _ in self._parser.read_events():
            pass

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
                tag = element.tag if isinstance(element.tag, str) else ""
                if self._depth == 2:
                    self._section, self._inside, self._section_limit = tag, 0, 0
                elif self._depth > 2:
                    self._count_in_section(tag, self._depth)
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

    def _count_in_section(self, tag: str, depth: int) -> None:
        """Elements in the Header, and in the Body's operation element by what a request
        of that operation may hold. What stands beside the operation element is not
        counted here: the envelope check refuses it, and the total bounds it."""
        limits = self._limits
        if self._section == _HEADER:
            self._inside += 1
            if self._inside > limits.max_header_elements:
                raise MalformedRequest(
                    f"the SOAP Header has more than {limits.max_header_elements} elements"
                )
            return
        if depth == 3:
            self._counting = self._section_limit == 0  # the first: the operation
            if self._counting:
                operations = limits.operation_elements
                largest = max(operations.values(), default=limits.max_elements)
                self._section_limit = operations.get(tag, largest)
                self._operation = tag
                self._children_limit = limits.operation_children.get(tag)
        if not self._counting:
            return
        if depth == 4 and self._children_limit is not None:
            self._children += 1
            most, what = self._children_limit
            if self._children > most:
                # A valid request's shape, as the schema check would say it (with credentials
                # or without: it tells nothing about accounts).
                operation = self._operation.rpartition("}")[2]
                raise ValidationError(f"{operation}: at most {most} {what} are allowed")
        self._inside += 1
        if self._inside > self._section_limit:
            raise MalformedRequest(
                "the operation element holds more elements than a valid request of it "
                f"may hold ({self._section_limit})"
            )

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


def _new_parser() -> etree.XMLPullParser:
    return etree.XMLPullParser(
        events=("start", "end"),
        # Always UTF-8 (encoding.py): an encoding declared inside the document, UTF-7 say,
        # must not show the parser markup the scan did not see.
        encoding="utf-8",
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=True,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


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


def _prolog_text(head: bytes) -> str:
    return head.decode("utf-8", errors="replace").lstrip("\ufeff")  # UTF-8 by now (encoding.py)


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
