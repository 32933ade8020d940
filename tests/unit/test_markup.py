"""MarkupScan: what a request's markup would make the parser build, counted on the bytes
before the parser sees them, block by block."""

from __future__ import annotations

import pytest
from lxml import etree

from soap_service.errors import MalformedRequest
from soap_service.web.markup import MarkupLimits, MarkupScan

LIMITS = MarkupLimits(
    max_elements=50,
    max_attributes=4,
    max_element_namespaces=3,
    max_namespaces=6,
    max_tag_bytes=256,
)
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
# Everything the scan must step over without counting, and tags it must count.
DOCUMENT = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<!-- a comment with <fake> tags, xmlns:x='y' and a > -->\n"
    f'<s:Envelope xmlns:s="{SOAP11}" xmlns:m="urn:m">'
    '<s:Header><w:Security xmlns:w="urn:w" s:mustUnderstand="1">'
    '<w:Password Type="a#b>c" other=\'it&apos;s "quoted" > too\'>secret &lt;x&gt;</w:Password>'
    "</w:Security></s:Header>"
    "<s:Body><m:Op><m:Html><![CDATA[<p xmlns='z'>a ]] > b</p><br/>]]></m:Html>"
    '<?pi with <tags> and xmlns="p"?><m:Empty/><m:Spaced   /><m:Text>a > b</m:Text>'
    "</m:Op></s:Body></s:Envelope  >"
).encode()
# s:Envelope, s:Header, w:Security, w:Password, s:Body, m:Op, m:Html, m:Empty, m:Spaced,
# m:Text; declarations: s and m on the Envelope, w on Security.
ELEMENTS, NAMESPACES = 10, 3


def test_the_counts_are_what_the_parser_builds() -> None:
    elements = [e for e in etree.fromstring(DOCUMENT).iter() if isinstance(e.tag, str)]
    declared = sum(
        len(e.nsmap) - (len(parent.nsmap) if (parent := e.getparent()) is not None else 0)
        for e in elements
    )
    assert (len(elements), declared) == (ELEMENTS, NAMESPACES)


def scanned(*blocks: bytes, limits: MarkupLimits = LIMITS) -> MarkupScan:
    scan = MarkupScan(limits)
    for block in blocks:
        scan.feed(block)
    return scan


def test_tags_and_declarations_are_counted_and_nothing_else() -> None:
    scan = scanned(DOCUMENT)
    assert (scan.elements, scan.namespaces) == (ELEMENTS, NAMESPACES)


def test_every_cut_between_two_blocks_counts_the_same() -> None:
    for cut in range(len(DOCUMENT) + 1):
        scan = scanned(DOCUMENT[:cut], DOCUMENT[cut:])
        assert (scan.elements, scan.namespaces) == (ELEMENTS, NAMESPACES), cut


def test_byte_by_byte_counts_the_same() -> None:
    scan = scanned(*(DOCUMENT[i : i + 1] for i in range(len(DOCUMENT))))
    assert (scan.elements, scan.namespaces) == (ELEMENTS, NAMESPACES)


def test_too_many_elements_are_refused() -> None:
    with pytest.raises(MalformedRequest, match=r"^the request has more than 50 elements$"):
        scanned(b"<r>" + b"<a/>" * 50 + b"</r>")
    assert scanned(b"<r>" + b"<a/>" * 49 + b"</r>").elements == 50


def test_an_element_with_too_many_attributes_is_refused() -> None:
    assert scanned(b'<a p="1" q="2" r="3" s="4" xmlns="x" xmlns:t="y"/>').elements == 1
    with pytest.raises(MalformedRequest, match=r"^an element has more than 4 attributes$"):
        scanned(b'<a p="1" q="2" r="3" s="4" t="5"/>')


def test_namespace_declarations_are_bounded_per_element_and_per_request() -> None:
    with pytest.raises(MalformedRequest, match=r"^an element declares more than 3 namespaces$"):
        scanned(b'<a xmlns="1" xmlns:b="2" xmlns:c="3" xmlns:d="4"/>')
    three = b'<a xmlns="1" xmlns:b="2" xmlns:c="3">'
    assert scanned(b"<r>" + three * 2).namespaces == 6
    with pytest.raises(MalformedRequest, match=r"^the request declares more than 6 namespaces$"):
        scanned(b"<r>" + three * 2 + b'<a xmlns:z="7">')


def test_a_start_tag_longer_than_the_limit_is_refused_whatever_blocks_bring_it() -> None:
    long_tag = b'<a v="' + b"x" * 300 + b'">'
    with pytest.raises(MalformedRequest, match=r"^a start tag is longer than 256 bytes$"):
        scanned(long_tag)
    with pytest.raises(MalformedRequest, match=r"^a start tag is longer than 256 bytes$"):
        scanned(*(long_tag[i : i + 7] for i in range(0, len(long_tag), 7)))


def test_a_long_start_tag_says_first_which_of_its_own_limits_it_breaks() -> None:
    crowded = b"<a " + b" ".join(b'xmlns:p%d="u"' % n for n in range(100)) + b">"
    with pytest.raises(MalformedRequest, match=r"^an element declares more than 3 namespaces$"):
        scanned(crowded)


def test_an_end_tag_or_text_of_any_length_is_stepped_over() -> None:
    end_tag = b"<r>" + b"text > more " * 1000 + b"</r" + b" " * 100_000 + b">"
    assert scanned(*(end_tag[i : i + 4096] for i in range(0, len(end_tag), 4096))).elements == 1


def test_a_section_of_any_length_is_stepped_over_across_blocks() -> None:
    cdata = b"<r><![CDATA[" + b"<a/>" * 100_000 + b"]]]]><![CDATA[>]]></r>"
    blocks = [cdata[i : i + 1000] for i in range(0, len(cdata), 1000)]
    assert scanned(*blocks).elements == 1


def test_the_scan_keeps_only_an_unfinished_tag_between_blocks() -> None:
    scan = scanned(b"<r>" + b"x" * 100_000 + b"<unfinish")
    assert scan._pending == b"<unfinish"
    scan.feed(b'ed a="1">')
    assert scan.elements == 2


def test_distinct_element_names_are_bounded_repeated_ones_are_not() -> None:
    """Each new name stays in libxml2's dictionary: a request may repeat a name as often as
    its element limit allows, but not bring more than a few hundred different ones."""
    limits = MarkupLimits(
        max_elements=10_000,
        max_attributes=4,
        max_element_namespaces=3,
        max_namespaces=6,
        max_tag_bytes=256,
        max_names=20,
    )
    repeated = MarkupScan(limits)
    repeated.feed(b"<a>" + b"<m:b/><m:c></m:c>" * 3000 + b"</a>")
    assert repeated.elements == 6001

    distinct = MarkupScan(limits)
    with pytest.raises(
        MalformedRequest, match=r"^the request has more than 20 distinct element names$"
    ):
        distinct.feed(b"<a>" + b"".join(b"<e%d/>" % n for n in range(21)) + b"</a>")
