"""Spyne's SOAP 1.1 protocol, adapted to run after the request guard.

- The envelope arrives parsed by the guard (size-capped, no DTD), in the call (call.py);
  Spyne does not parse it again, and does not resolve SOAP-encoding hrefs
  (document/literal has none).
- The sender is authenticated before anything else is looked at.
- The body is validated against the schema published in the WSDL; schema errors become
  fault strings built from the element path and our own words, never the submitted value.
- Arguments are read and answers written by the compiled codec (codec.py), not by
  Spyne's generic walk over class attributes.
- Errors are raised as they are, not as Spyne faults: they leave Spyne and become faults
  in one place (faults.py).
- A batch operation (SendMessages) is refused whole only for what is wrong with the batch
  itself (more entries than allowed, an element beside them). An entry that breaks the
  schema, or whose base64 is broken, is refused alone: it reaches the operation as a
  `RefusedEntry` in place of its value, and the others go on.
"""

from __future__ import annotations

import copy
import re
import threading
from dataclasses import dataclass
from typing import Any

from lxml import etree
from spyne.protocol.soap import Soap11

from soap_service.errors import (
    MustUnderstand,
    ServiceError,
    UnknownOperation,
    ValidationError,
)
from soap_service.soap.call import call_of
from soap_service.soap.codec import Codec, readable_path
from soap_service.soap.faults import SOAP11_ENV
from soap_service.soap.wsdl import PublishedSchema
from soap_service.soap.wssecurity import SECURITY_TAG, read_username_token

UNDERSTOOD_HEADERS = frozenset({SECURITY_TAG})
_MUST_UNDERSTAND = f"{{{SOAP11_ENV}}}mustUnderstand"


@dataclass(frozen=True)
class BatchOperation:
    """An operation whose request is a list of entries, each refused alone if bad."""

    entry: str  # the entries' element name
    single: str  # the operation that takes one entry: an entry is checked as its request


BATCH_OPERATIONS = {
    "SendMessages": BatchOperation(entry="Message", single="SendMessage"),
}


@dataclass(frozen=True)
class RefusedEntry:
    """An entry of a batch that was refused before the operation ran, and why."""

    error: ServiceError
    # Its Reference element's text, if it has a short one, to help the caller match it.
    reference: str | None


class GuardedSoap11(Soap11):
    def __init__(self, codec: Codec) -> None:
        # Spyne's own validation is off: the schema check below replaces it.
        super().__init__(validator=None, cleanup_namespaces=True)
        self._codec = codec
        self._schema: etree.XMLSchema | None = None
        self._schema_lock = threading.Lock()
        self._operations: dict[str, str] = {}
        self._repeat_limits: dict[str, int] = {}

    def use_schema(self, published: PublishedSchema) -> None:
        self._schema = published.schema
        self._repeat_limits = published.repeat_limits
        self._operations = {
            key: key.rsplit("}", 1)[-1] for key in self.app.interface.service_method_map
        }

    def create_in_document(self, ctx: Any, charset: str | None = None) -> None:
        ctx.in_document = call_of(ctx).envelope

    def decompose_incoming_envelope(self, ctx: Any, message: Any = None) -> None:
        call = call_of(ctx)
        envelope = ctx.in_document
        header = envelope.find(f"{{{SOAP11_ENV}}}Header")
        body = envelope.find(f"{{{SOAP11_ENV}}}Body")[0]  # the guard checked there is one
        ctx.in_header_doc = list(header) if header is not None else None
        ctx.in_body_doc = body
        ctx.method_request_string = body.tag
        operation = self._operations.get(body.tag)
        if operation is None:
            raise UnknownOperation(
                "unknown operation; this service offers "
                + ", ".join(sorted(self._operations.values()))
            )
        call.operation = operation
        _check_soap_action(call.soap_action, operation)
        _check_must_understand(ctx.in_header_doc)
        call.account = call.services.authenticator.authenticate(
            read_username_token(ctx.in_header_doc), call.client
        )

        call.refused_entries = self._validate(body, operation)

    def _validate(self, body: etree._Element, operation: str) -> dict[int, ServiceError]:
        """Check the operation's element against the schema; for a batch whose entries
        alone break it, the refused entries (by position from 0)."""
        # A batch of more entries than allowed never gets here: the guard stops it at the
        # first entry too many (envelope.py), before the schema would walk them all.
        batch = BATCH_OPERATIONS.get(operation)
        error = self._schema_error(body)
        if error is None:
            return {}
        if batch is None:
            raise error
        entries = batch_entries(body)
        namespace = etree.QName(body).namespace
        if any(entry.tag != f"{{{namespace}}}{batch.entry}" for entry in entries):
            raise error
        refused: dict[int, ServiceError] = {}
        for position, entry in enumerate(entries):
            alone = etree.Element(f"{{{namespace}}}{batch.single}", nsmap=body.nsmap)
            alone.append(copy.deepcopy(entry))
            entry_error = self._schema_error(alone)
            if entry_error is not None:
                # Its path as the entry's own: "Message/Subject: ...".
                refused[position] = ValidationError(
                    entry_error.message.replace(f"{batch.single}/", "", 1)
                )
        if not refused:
            raise error  # the batch itself is wrong, not one of its entries
        return refused

    def _schema_error(self, element: etree._Element) -> ServiceError | None:
        assert self._schema is not None, "use_schema() was not called"
        # One XMLSchema object keeps one error log: validations must not interleave.
        with self._schema_lock:
            if self._schema.validate(element):
                return None
            error = self._schema.error_log[0]
        return schema_error(error, self._repeat_limits)

    def deserialize(self, ctx: Any, message: Any) -> None:
        """The operation's arguments, read along compiled plans (see codec.py); a batch's
        entries one by one, each refused alone (RefusedEntry)."""
        call = call_of(ctx)
        wrapper = ctx.descriptor.in_message
        if call.operation in BATCH_OPERATIONS:
            entries = self._codec.read_entries(
                wrapper, ctx.in_body_doc, call.binary_parts, call.refused_entries
            )
            ctx.in_object = [
                [
                    RefusedEntry(value, _reference_of(element))
                    if isinstance(value, ServiceError)
                    else value
                    for value, element in entries
                ]
            ]
        else:
            ctx.in_object = self._codec.read_arguments(
                wrapper, ctx.in_body_doc, binary_parts=call.binary_parts
            )
        ctx.in_header = None


class CodecSoap11(Soap11):
    """Answers written along compiled plans (see codec.py). Only answers: a call that
    failed is raised before anything is written (faults.py writes its fault)."""

    def __init__(self, codec: Codec) -> None:
        super().__init__(cleanup_namespaces=False)
        self._codec = codec

    def serialize(self, ctx: Any, message: Any) -> None:
        ctx.out_document = etree.Element(
            f"{{{SOAP11_ENV}}}Envelope", nsmap={"soap11env": SOAP11_ENV, "tns": self.app.tns}
        )
        ctx.out_body_doc = etree.SubElement(ctx.out_document, f"{{{SOAP11_ENV}}}Body")
        self._codec.write_arguments(
            ctx.descriptor.out_message, list(ctx.out_object), ctx.out_body_doc
        )


def batch_entries(body: etree._Element) -> list[etree._Element]:
    """A batch operation's entries: its child elements (comments apart)."""
    return [child for child in body if isinstance(child.tag, str)]


# A refused entry's Reference is echoed to help the caller match it, not checked: only if
# it is short (the domain's own limit, a setting, judges the ones that are stored).
ECHOED_REFERENCE_CHARS = 100


def _reference_of(entry: etree._Element) -> str | None:
    for child in entry:
        if isinstance(child.tag, str) and etree.QName(child).localname == "Reference":
            text = (child.text or "").strip()
            return text if 0 < len(text) <= ECHOED_REFERENCE_CHARS else None
    return None


def _check_soap_action(header: str | None, operation: str) -> None:
    """The operation is the Body's; a SOAPAction that names another one is refused rather
    than believed (or silently ignored). Empty means "see the Body" (SOAP 1.1, 6.1.1)."""
    action = (header or "").strip().strip('"').strip()
    if not action:
        return
    named = re.split(r"[/#:]", action)[-1]
    if named != operation:
        raise UnknownOperation(
            f"the SOAPAction header names another operation than the Body ({operation})"
        )


def _check_must_understand(headers: list[etree._Element] | None) -> None:
    for element in headers or ():
        if element.get(_MUST_UNDERSTAND) in {"1", "true"} and element.tag not in UNDERSTOOD_HEADERS:
            raise MustUnderstand(
                f"the header {etree.QName(element).localname} is marked mustUnderstand "
                "but this service does not process it"
            )


_NAMESPACED = re.compile(r"\{[^}]*\}")
_REPEATED_STEP = re.compile(r"^(?P<name>[^/\[]+)\[(?P<index>\d+)\]$")


def schema_error(error: Any, repeat_limits: dict[str, int]) -> ServiceError:
    """Our own words for a schema error: the field's path and what is wrong with it.

    libxml2's messages can quote the submitted value, so only the parts that come from
    the schema (allowed values, limits, element names) are taken from them."""
    path = readable_path(error.path or "") or "request"
    message = error.message or ""
    kind = error.type_name or ""
    if kind == "SCHEMAV_CVC_ENUMERATION_VALID":
        # "... The value '<submitted>' is not an element of the set {'a', 'b'}.": the last
        # "set {" is libxml2's, whatever the submitted value contains.
        _, found, allowed = message.rpartition("of the set {")
        values = allowed.rstrip(".").rstrip("}").replace("'", "") if found else "listed"
        return ValidationError(f"{path}: the value must be one of {values}")
    if kind.startswith("SCHEMAV_CVC_DATATYPE_VALID"):
        if "xs:int" in message or "xs:long" in message:
            return ValidationError(f"{path}: must be a whole number within the type's range")
        if "xs:dateTime" in message:
            return ValidationError(f"{path}: must be an xs:dateTime")
        return ValidationError(f"{path}: the value has the wrong type")
    if kind == "SCHEMAV_CVC_MAXLENGTH_VALID":
        limit = re.search(r"maximum length of '(\d+)'", message)
        return ValidationError(
            f"{path}: longer than {limit.group(1) if limit else 'allowed'} characters"
        )
    if kind == "SCHEMAV_ELEMENT_CONTENT":
        # Only element names appear here: the schema's, or the request's structure.
        expected = re.search(r"Expected is \(\s*(.*?)\s*\)", message)
        wanted = _NAMESPACED.sub("", expected.group(1)) if expected else None
        if "Missing child element" in message:
            return ValidationError(f"{path}: the element {wanted or 'required'} is missing")
        parent, _, found = path.rpartition("/")
        repeated = _REPEATED_STEP.match(found)
        if not wanted and repeated and repeated["name"] in repeat_limits:
            most = repeat_limits[repeated["name"]]
            return ValidationError(
                f"{parent}: at most {most} {repeated['name']} elements are allowed"
            )
        if wanted:
            return ValidationError(
                f"{parent or path}: expected the element {wanted} but found {found[:80]}"
                " (a required element is missing or elements are out of order)"
            )
        return ValidationError(f"{path}: this element is not allowed here")
    if kind == "SCHEMAV_CVC_COMPLEX_TYPE_2_4":
        return ValidationError(f"{path}: an element is missing or in the wrong place")
    return ValidationError(f"{path}: does not match the schema ({kind or 'invalid'})")
