"""Counting what a request's markup would make the XML parser build, before it sees it.

libxml2 parses a start tag only once it holds all of it, and keeps every name it meets
(element, attribute and prefix names, namespace URIs) in a dictionary its thread never
gives back: one start tag with a million namespace declarations costs a second of CPU and
hundreds of MB, all before anyone has looked at the credentials. So each block is scanned
here first, on its UTF-8 bytes, and a request whose markup is beyond the limits is refused
before the parser gets the block.

The scan follows the markup, not the text: it jumps from one `<` to the next (text and
attribute values are never walked byte by byte), steps over comments, CDATA sections and
processing instructions whole, and keeps an unfinished construct for the next block. Its
cost grows with the number of tags, not with the size of the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from soap_service.errors import MalformedRequest

# A complete end tag, or a complete start tag: its name, then its attributes, whose quoted
# values may hold `>`.
_TAG = re.compile(rb"<(?:/[^>]*+>|([^\s/>!?\"'=<]+)((?:[^>\"']++|\"[^\"]*+\"|'[^']*+')*+)>)")
# In a tag's attributes: each `name = "value"` (an upper bound: only an attribute value
# that itself holds `="` counts twice), and the namespace declarations among them.
_ASSIGNMENT = re.compile(rb"=\s*[\"']")
_DECLARATION = re.compile(rb"(?:^|\s)xmlns(?::[^\s=]*)?\s*=")
# What may follow `<` and is stepped over whole, and where it ends.
_SECTIONS = ((b"!--", b"-->"), (b"![CDATA[", b"]]>"), (b"?", b"?>"))
_LONGEST_OPENING = max(len(opening) for opening, _ in _SECTIONS)


@dataclass(frozen=True, kw_only=True)
class MarkupLimits:
    # Start tags in the whole request.
    max_elements: int
    # Attributes of one element, namespace declarations apart.
    max_attributes: int
    # Namespace declarations of one element, and of the whole request.
    max_element_namespaces: int
    max_namespaces: int
    # The longest start tag, attributes and all.
    max_tag_bytes: int
    # Distinct element names (as written, prefix and all) in the whole request: each new
    # one stays in libxml2's dictionary, and a valid request uses a few dozen.
    max_names: int = 256


class MarkupScan:
    """Feed it a request's UTF-8 bytes block by block; it raises MalformedRequest as soon
    as the markup goes beyond the limits."""

    def __init__(self, limits: MarkupLimits) -> None:
        self._limits = limits
        self._pending = b""  # an unfinished construct, from `<`, kept for the next block
        self._closing: bytes | None = None  # inside a comment, CDATA or PI: its end
        self.elements = 0
        self.namespaces = 0
        self._names: set[bytes] = set()

    def feed(self, data: bytes) -> None:
        buffer = self._pending + data if self._pending else data
        self._pending = b""
        longest = self._limits.max_tag_bytes
        position = 0
        while position < len(buffer):
            if self._closing is not None:
                position = self._after_section(buffer, position, self._closing)
                if position < 0:
                    return
                continue
            start = buffer.find(b"<", position)
            if start < 0:
                return
            # Most markup is a whole tag: matched at once. The rest (comments, CDATA,
            # processing instructions, a tag the block cut in two) takes the long way.
            tag = _TAG.match(buffer, start, start + longest)
            if tag is None:
                position = self._markup(buffer, start)
                if position < 0:
                    self._keep(buffer, start)
                    return
                continue
            position = tag.end()
            if tag.group(1) is not None:
                self._count(tag.group(2), tag.group(1))

    def _after_section(self, buffer: bytes, position: int, closing: bytes) -> int:
        """Past the end of the comment, CDATA section, PI or end tag we are in; -1 if the
        buffer ends first."""
        end = buffer.find(closing, position)
        if end < 0:
            # The end may be cut in two by the block boundary: keep its possible start.
            self._pending = buffer[max(position, len(buffer) - len(closing) + 1) :]
            return -1
        self._closing = None
        return end + len(closing)

    def _markup(self, buffer: bytes, start: int) -> int:
        """Where the markup at `start` ends, or -1 if the buffer ends before it does, for
        what is not a whole tag."""
        after = buffer[start + 1 : start + 1 + _LONGEST_OPENING]
        for opening, closing in _SECTIONS:
            if after.startswith(opening):
                self._closing = closing
                return start + 1 + len(opening)
            if opening.startswith(after) and start + 1 + len(after) == len(buffer):
                return -1  # cut short: `<!-` may yet be a comment
        if after[:1] in (b"/", b"!"):
            # An end tag the block cut in two, or longer than any start tag may be; or a
            # declaration, which the parser refuses here. Nothing in it is counted.
            self._closing = b">"
            return start + 1
        longest = self._limits.max_tag_bytes
        if len(buffer) - start < longest:
            return -1  # not complete yet (or not markup at all: the parser will say)
        self._count(buffer[start : start + longest])  # its own limits first, if it breaks them
        raise MalformedRequest(f"a start tag is longer than {longest} bytes")

    def _count(self, attributes: bytes, name: bytes | None = None) -> None:
        """One more start tag, with these attributes (and this name, if known)."""
        limits = self._limits
        self.elements += 1
        if self.elements > limits.max_elements:
            raise MalformedRequest(f"the request has more than {limits.max_elements} elements")
        if name is not None and name not in self._names:
            self._names.add(name)
            if len(self._names) > limits.max_names:
                raise MalformedRequest(
                    f"the request has more than {limits.max_names} distinct element names"
                )
        if len(attributes) < 3:  # `` or `/` or ` /`: none (the shortest is ` a=""`)
            return
        declarations = len(_DECLARATION.findall(attributes))
        if len(_ASSIGNMENT.findall(attributes)) - declarations > limits.max_attributes:
            raise MalformedRequest(f"an element has more than {limits.max_attributes} attributes")
        if declarations > limits.max_element_namespaces:
            raise MalformedRequest(
                f"an element declares more than {limits.max_element_namespaces} namespaces"
            )
        self.namespaces += declarations
        if self.namespaces > limits.max_namespaces:
            raise MalformedRequest(
                f"the request declares more than {limits.max_namespaces} namespaces"
            )

    def _keep(self, buffer: bytes, start: int) -> None:
        self._pending = buffer[start:]  # shorter than the longest start tag (_markup)
