"""The multipart/signed envelope of an S/MIME-signed mail (RFC 8551, RFC 1847): the
signed entity exactly as signed, then its detached application/pkcs7-signature.

Both the gateway mails and the notifications are written as 7-bit MIME text with CRLF
line ends, the canonical form a signature covers and no mail server rewrites.
"""

from __future__ import annotations

import base64

CRLF = b"\r\n"


def signed_mail(headers: list[str], entity: bytes, signature: bytes, boundary: str) -> bytes:
    """The whole RFC 5322 message: `headers` (without Content-Type, which this adds),
    `entity` (a MIME entity with its own headers, ending without a line break: the CRLF
    before the next boundary is the boundary's, RFC 2046 5.1.1) and its signature."""
    content_type = (
        'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
        f'micalg=sha-256; boundary="{boundary}"'
    )
    return b"".join(
        [
            "\r\n".join([*headers, content_type]).encode("utf-8"),
            CRLF * 2,
            f"--{boundary}".encode("ascii") + CRLF,
            entity,
            CRLF + f"--{boundary}".encode("ascii") + CRLF,
            b'Content-Type: application/pkcs7-signature; name="smime.p7s"' + CRLF,
            b'Content-Disposition: attachment; filename="smime.p7s"' + CRLF,
            b"Content-Transfer-Encoding: base64" + CRLF * 2,
            base64_lines(signature),
            f"--{boundary}--".encode("ascii") + CRLF,
        ]
    )


def base64_lines(data: bytes) -> bytes:
    """Base64 in lines of 76 characters, each ending in CRLF."""
    return base64.encodebytes(data).replace(b"\n", CRLF)
