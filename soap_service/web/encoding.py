"""The charset a request body comes in, and the body as UTF-8 for the parser.

The Content-Type's charset decides; without one, what the first bytes show (XML 1.0,
appendix F), then the XML declaration. UTF-8 and ASCII are read as they are; the few other
supported charsets are transcoded block by block, and the parser is always told UTF-8, so
that it reads exactly the bytes the markup scan counted (markup.py).
"""

from __future__ import annotations

import codecs
import re
from typing import TypeAlias

from soap_service.errors import MalformedRequest, UnsupportedMediaType

# A charset parameter as the email package reads it: an RFC 2231 value (charset*=) comes
# as a (charset, language, value) tuple, which is refused as unknown.
Charset: TypeAlias = str | tuple[str | None, str | None, str] | None

# How the first bytes reveal the encoding (XML 1.0, appendix F), BOM or not.
ENCODING_SIGNATURES = (
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


# The charsets a body may come in (Python's codec names): UTF-8 and UTF-16, which the
# WS-I Basic Profile allows (R1012), and a few an older client may still send. UTF-8 and
# ASCII are read as they are; the others are transcoded to UTF-8.
_AS_IS = frozenset({"utf-8", "utf-8-sig", "ascii"})
_TRANSCODED = frozenset(
    {"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"}
    | {"iso8859-1", "iso8859-15", "cp1252"}
)
_XML_DECLARATION = re.compile(r"\s*<\?xml\s[^?>]*?\bencoding\s*=\s*[\"']([^\"']{1,40})[\"']")


def charset_encoding(charset: Charset) -> str | None:
    """The codec the Content-Type's charset names; None if it names none."""
    if charset is None or charset == "":
        return None
    if not isinstance(charset, str):  # e.g. RFC 2231 charset*=
        raise UnsupportedMediaType("the charset of the Content-Type is not known")
    try:
        name = codecs.lookup(charset).name
    except (LookupError, ValueError):
        raise UnsupportedMediaType("the charset of the Content-Type is not known") from None
    if name not in _AS_IS | _TRANSCODED:
        raise UnsupportedMediaType(f"the charset {charset!r:.40} is not supported")
    return name


def body_encoding(charset_encoding: str | None, head: bytes) -> str:
    """The body's encoding: the Content-Type's charset; else what the first bytes show
    (XML 1.0, appendix F); else the XML declaration's; else UTF-8."""
    if charset_encoding is not None:
        return charset_encoding
    for signature, encoding in ENCODING_SIGNATURES:
        if head.startswith(signature):
            return encoding
    declared = _XML_DECLARATION.match(head[:1024].decode("latin-1"))
    if declared is None:
        return "utf-8"
    try:
        name = codecs.lookup(declared.group(1)).name
    except (LookupError, ValueError):
        name = ""
    if name not in _AS_IS | _TRANSCODED:
        raise UnsupportedMediaType(
            f"the encoding {declared.group(1)!r} of the XML declaration is not supported"
        )
    return name


class Utf8:
    """The body as UTF-8: as it came, or transcoded from its charset block by block."""

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._decoder = (
            None if encoding in _AS_IS else codecs.getincrementaldecoder(encoding)(errors="strict")
        )
        self.done = False

    def decode(self, data: bytes, *, final: bool) -> bytes:
        self.done = final
        if self._decoder is None:
            return data
        try:
            return self._decoder.decode(data, final).encode("utf-8")
        except UnicodeError:
            raise MalformedRequest(
                f"the request is not well-formed XML: its bytes are not {self._encoding}"
            ) from None
