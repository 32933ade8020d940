"""Reading requests into and writing answers from the Spyne types, compiled per type.

Spyne's generic (de)serialiser looks up every class attribute, default and protocol hook
for every element, every time: for SendMessage that was a fifth of the CPU of a request.
The types of this API use a handful of kinds (strings, enums, xs:int, xs:dateTime,
base64, nested types, lists), so each type is compiled once into a plan of
(element tag, attribute, kind) and requests and answers are walked along it.

Only documents that passed the published schema reach `read`, so it does not validate
again; the tests check that both directions give exactly what Spyne gives.
"""

from __future__ import annotations

import binascii
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pybase64
from lxml import etree
from spyne import Boolean, ByteArray, ComplexModelBase, DateTime, Integer, Unicode
from spyne.model.enum import EnumBase

from soap_service.errors import InvalidBase64, ServiceError

_WHITESPACE = re.compile(r"[ \t\r\n]+")
_PREFIXED_STEP = re.compile(r"(^|/)[^/:\[]+:")

TEXT, INTEGER, BOOLEAN, DATETIME, BINARY, COMPLEX = (
    "text", "integer", "boolean", "datetime", "binary", "complex"
)  # fmt: skip


@dataclass(frozen=True)
class _Field:
    name: str
    tag: str
    kind: str
    many: bool
    type: Any


class Codec:
    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self._plans: dict[type[ComplexModelBase], tuple[_Field, ...]] = {}
        self._lock = threading.Lock()

    # Requests.

    def read_arguments(
        self,
        wrapper: type[ComplexModelBase],
        element: etree._Element,
        *,
        binary_parts: dict[str, bytes] | None = None,
    ) -> list[Any]:
        """The operation's arguments, in declaration order, from its wrapper element;
        `binary_parts` holds MTOM content by the path of the element that referred to it."""
        values = self._read_fields(wrapper, element, binary_parts or {})
        return [values.get(field.name) for field in self._plan(wrapper)]

    def read_entries(
        self,
        wrapper: type[ComplexModelBase],
        element: etree._Element,
        binary_parts: dict[str, bytes],
        refused: dict[int, ServiceError],
    ) -> list[tuple[Any, etree._Element]]:
        """A batch's entries, the wrapper's one repeated field, each read on its own: its
        value, or the error that refused it (already in `refused`, or met reading it),
        with its element."""
        [field] = self._plan(wrapper)
        entries: list[tuple[Any, etree._Element]] = []
        for position, child in enumerate(c for c in element if isinstance(c.tag, str)):
            value: Any = refused.get(position)
            if value is None:
                try:
                    value = self._read_value(field, child, binary_parts)
                except ServiceError as error:
                    value = error
            entries.append((value, child))
        return entries

    def _read_fields(
        self, cls: type[ComplexModelBase], element: etree._Element, parts: dict[str, bytes]
    ) -> dict[str, Any]:
        by_tag = {field.tag: field for field in self._plan(cls)}
        values: dict[str, Any] = {}
        for child in element:
            # A comment's tag is not a str; unknown elements were refused by the schema.
            field = by_tag.get(child.tag) if isinstance(child.tag, str) else None
            if field is None:
                continue
            value = self._read_value(field, child, parts)
            if field.many:
                values.setdefault(field.name, []).append(value)
            else:
                values[field.name] = value
        return values

    def _read_value(self, field: _Field, element: etree._Element, parts: dict[str, bytes]) -> Any:
        if field.kind == COMPLEX:
            instance = field.type.__new__(field.type)  # Spyne's __init__ sets every default
            instance.__dict__.update(dict.fromkeys(f.name for f in self._plan(field.type)))
            instance.__dict__.update(self._read_fields(field.type, element, parts))
            return instance
        if field.kind == BINARY:
            if parts and element.text is None:
                found = parts.pop(element.getroottree().getpath(element), None)
                if found is not None:
                    return found
            return _decode_base64(element)
        text = element.text or ""
        if field.kind == INTEGER:
            return int(text)
        if field.kind == BOOLEAN:
            return text.strip() in ("true", "1")
        if field.kind == DATETIME:
            return datetime.fromisoformat(text)
        return text

    # Answers.

    def write_arguments(
        self, wrapper: type[ComplexModelBase], values: list[Any], parent: etree._Element
    ) -> None:
        element = etree.SubElement(parent, f"{{{self._namespace}}}{wrapper.get_type_name()}")
        self._write_fields(wrapper, dict(zip(self._names(wrapper), values, strict=False)), element)

    def _names(self, cls: type[ComplexModelBase]) -> list[str]:
        return [field.name for field in self._plan(cls)]

    def _write_fields(
        self, cls: type[ComplexModelBase], values: Any, element: etree._Element
    ) -> None:
        get = values.get if isinstance(values, dict) else values.__dict__.get
        for field in self._plan(cls):
            value = get(field.name)
            if value is None:
                continue  # optional and absent: the element is left out
            for item in value if field.many else (value,):
                child = etree.SubElement(element, field.tag)
                if field.kind == COMPLEX:
                    self._write_fields(field.type, item, child)
                elif field.kind == DATETIME:
                    child.text = item.isoformat()
                elif field.kind == BINARY:
                    child.text = pybase64.b64encode(item).decode("ascii")
                elif field.kind == BOOLEAN:
                    child.text = "true" if item else "false"
                else:
                    child.text = str(item)

    # Plans.

    def _plan(self, cls: type[ComplexModelBase]) -> tuple[_Field, ...]:
        plan = self._plans.get(cls)
        if plan is None:
            with self._lock:
                plan = self._plans[cls] = tuple(
                    _Field(
                        name=name,
                        tag=f"{{{self._namespace}}}{name}",
                        kind=_kind_of(member),
                        many=member.Attributes.max_occurs > 1,
                        type=member,
                    )
                    for name, member in cls._type_info.items()
                )
        return plan


def _kind_of(member: Any) -> str:
    if issubclass(member, ComplexModelBase):
        return COMPLEX
    if issubclass(member, ByteArray):
        return BINARY
    if issubclass(member, DateTime):
        return DATETIME
    if issubclass(member, Boolean):
        return BOOLEAN
    if issubclass(member, Integer):
        return INTEGER
    if issubclass(member, (Unicode, EnumBase)):
        return TEXT
    raise TypeError(f"the codec does not know {member!r}")


def _decode_base64(element: etree._Element) -> bytes:
    # Strict: libxml2's xs:base64Binary check lets characters like "!" through, and
    # Python's default decoder silently drops them.
    text = element.text or ""
    # The tree's copy of the (larger) base64 text goes before decoding: the str just
    # made is the only one left, and the decoded bytes do not meet both.
    element.text = None
    try:
        try:
            content = pybase64.b64decode(text, validate=True)
        except binascii.Error:  # XML allows whitespace (line breaks) inside base64
            content = pybase64.b64decode(_WHITESPACE.sub("", text), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidBase64(f"{element_path(element)}: the content is not valid base64") from None
    return content


def element_path(element: etree._Element) -> str:
    """SendMessage/Message/Attachments/Attachment[2]/Content: where in the request."""
    return readable_path(element.getroottree().getpath(element)).split("Body/", 1)[-1]


def readable_path(path: str) -> str:
    """An lxml path without the request's namespace prefixes."""
    return _PREFIXED_STEP.sub(r"\1", path).lstrip("/")
