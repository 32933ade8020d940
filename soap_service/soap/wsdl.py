"""The published WSDL: Spyne's document, tidied and pointing at the public URL.

Spyne declares every namespace it knows on the root, SOAP 1.2 included; some generators
read a declared SOAP 1.2 namespace as SOAP 1.2 support, so unused declarations go. The
sections are put in the customary order and indented, so the committed file diffs well.

Each message's one part is named `parameters`, the document/literal wrapped convention:
.NET's wsdl.exe and svcutil generate wrapped operations (`SendMessage(message)`) only for
parts of that name, and "bare" ones (`SendMessage(SendMessage)`) otherwise. A part's name
never travels on the wire (the element's does), so no client's requests change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

WSDL = "http://schemas.xmlsoap.org/wsdl/"
XSD = "http://www.w3.org/2001/XMLSchema"
_SECTION_ORDER = ("documentation", "types", "message", "portType", "binding", "service")
_QNAME_VALUE = re.compile(r"^([A-Za-z_][\w.-]*):[A-Za-z_]")


def tidy_wsdl(document: bytes, service_documentation: str) -> bytes:
    root = etree.fromstring(document)
    _order_sections(root)
    _order_schema(root)
    documentation = etree.Element(etree.QName(WSDL, "documentation"))
    documentation.text = service_documentation
    root.insert(0, documentation)
    for element in root.iter(f"{{{WSDL}}}documentation", f"{{{XSD}}}documentation"):
        element.text = " ".join((element.text or "").split())  # docstrings' line breaks
    for message in root.iter(f"{{{WSDL}}}message"):
        parts = message.findall(f"{{{WSDL}}}part")
        if len(parts) == 1 and "element" in parts[0].attrib:
            parts[0].set("name", "parameters")
    for operation in root.iter(f"{{{WSDL}}}operation"):
        if "parameterOrder" in operation.attrib:  # meaningless for document style
            del operation.attrib["parameterOrder"]
    etree.cleanup_namespaces(root, keep_ns_prefixes=sorted(_prefixes_in_values(root)))
    etree.indent(root, space="  ")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8") + b"\n"


@dataclass(frozen=True)
class PublishedSchema:
    """The XML Schema embedded in the WSDL, to validate requests against what is published,
    and what the guard and the fault messages need to know of it."""

    # The published schema, except that xs:base64Binary elements are checked as xs:string:
    # libxml2 checks base64 by decoding it (0.4 ms for a 50 KB attachment, most of the
    # validation) and still lets "!" through, while the codec decodes strictly anyway.
    schema: etree.XMLSchema
    # Tags of the xs:base64Binary elements.
    binary_tags: frozenset[str]
    # Element name -> maxOccurs, for the elements that may repeat.
    repeat_limits: dict[str, int]
    # Tag of each global element (the operations among them) -> the most elements a valid
    # document under it holds, itself included.
    element_limits: dict[str, int]
    # Tag of each global element -> the most child elements it holds, and what they are
    # called in a refusal ("Message elements" when one element repeats, "child elements").
    child_limits: dict[str, tuple[int, str]]


def schema_of(wsdl: bytes) -> PublishedSchema:
    root = etree.fromstring(wsdl)
    schemas = root.findall(f"{{{WSDL}}}types/{{{XSD}}}schema")
    if len(schemas) != 1:
        raise ValueError("the WSDL must embed exactly one schema")
    schema = schemas[0]
    namespace = schema.get("targetNamespace")
    elements = list(schema.iter(f"{{{XSD}}}element"))
    element_limits = _element_limits(schema, namespace or "")
    binaries = [element for element in elements if element.get("type") == "xs:base64Binary"]
    binary_tags = frozenset(f"{{{namespace}}}{element.get('name')}" for element in binaries)
    for element in binaries:
        element.set("type", "xs:string")
    return PublishedSchema(
        # Serialising the sub-tree carries the namespace declarations its QName values need.
        schema=etree.XMLSchema(etree.fromstring(etree.tostring(schema))),
        binary_tags=binary_tags,
        repeat_limits={
            element.get("name", ""): int(element.get("maxOccurs", "1"))
            for element in elements
            if element.get("maxOccurs", "1").isdigit() and int(element.get("maxOccurs", "1")) > 1
        },
        element_limits=element_limits,
        child_limits=_child_limits(schema, namespace or ""),
    )


def _element_limits(schema: etree._Element, namespace: str) -> dict[str, int]:
    """How many elements a valid document under each global element holds at most: every
    element counted as often as its maxOccurs allows, a base64 one with the xop:Include it
    holds when sent as MTOM. The guard bounds each operation's request by it, so every
    repetition in the schema must have a bound."""
    types = {kind.get("name"): kind for kind in schema.findall(f"{{{XSD}}}complexType")}
    counted: dict[str, int] = {}

    def inside(type_name: str, seen: frozenset[str]) -> int:
        local = type_name.rpartition(":")[2]
        if type_name == "xs:base64Binary":
            return 1  # its content, or the xop:Include that refers to it
        if local not in types or type_name.startswith("xs:"):
            return 0  # a simple type: text only
        if local in seen:
            raise ValueError(f"the type {local} contains itself: no bound on its elements")
        if local not in counted:
            counted[local] = sum(
                _max_occurs(child) * (1 + inside(child.get("type", ""), seen | {local}))
                for child in types[local].iter(f"{{{XSD}}}element")
            )
        return counted[local]

    return {
        f"{{{namespace}}}{element.get('name')}": 1 + inside(element.get("type", ""), frozenset())
        for element in schema.findall(f"{{{XSD}}}element")
    }


def _child_limits(schema: etree._Element, namespace: str) -> dict[str, tuple[int, str]]:
    """How many child elements a valid element of each global one holds at most (the
    guard stops a batch at its 101st entry, before the parser reads 30,000 more)."""
    types = {kind.get("name"): kind for kind in schema.findall(f"{{{XSD}}}complexType")}
    limits: dict[str, tuple[int, str]] = {}
    for element in schema.findall(f"{{{XSD}}}element"):
        kind = types.get(element.get("type", "").rpartition(":")[2])
        children = [] if kind is None else list(kind.iter(f"{{{XSD}}}element"))
        names = {child.get("name") for child in children}
        what = f"{names.pop()} elements" if len(names) == 1 else "child elements"
        limits[f"{{{namespace}}}{element.get('name')}"] = (
            sum(_max_occurs(child) for child in children),
            what,
        )
    return limits


def _max_occurs(element: etree._Element) -> int:
    value = element.get("maxOccurs", "1")
    if not value.isdigit():
        raise ValueError(f"{element.get('name')} may repeat without bound ({value})")
    return int(value)


def _order_sections(root: etree._Element) -> None:
    children = list(root)
    for child in children:
        root.remove(child)

    def rank(element: etree._Element) -> int:
        name = etree.QName(element).localname
        return _SECTION_ORDER.index(name) if name in _SECTION_ORDER else len(_SECTION_ORDER)

    root.extend(sorted(children, key=rank))  # stable: keeps order within a section


def _order_schema(root: etree._Element) -> None:
    """Spyne emits types in set order, which changes from run to run: sort them by kind
    (simple types, complex types, elements) and name."""
    kinds = ("simpleType", "complexType", "element")
    for schema in root.iter(f"{{{XSD}}}schema"):
        children = list(schema)
        for child in children:
            schema.remove(child)

        def key(element: etree._Element) -> tuple[int, str]:
            kind = etree.QName(element).localname
            return (kinds.index(kind) if kind in kinds else len(kinds), element.get("name", ""))

        schema.extend(sorted(children, key=key))


def _prefixes_in_values(root: etree._Element) -> set[str]:
    """Prefixes used inside attribute values (type="tns:X"), which lxml cannot see."""
    declared = set(root.nsmap)
    used = set()
    for element in root.iter(etree.Element):
        for value in element.attrib.values():
            match = _QNAME_VALUE.match(value)
            if match and match.group(1) in declared:
                used.add(match.group(1))
    return used
