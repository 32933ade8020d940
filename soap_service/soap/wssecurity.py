"""Reading the WS-Security UsernameToken out of a SOAP header (OASIS WSS 1.0/1.1)."""

from __future__ import annotations

import base64
import binascii

from lxml import etree

from soap_service.domain.auth import PasswordType, UsernameToken
from soap_service.errors import AuthenticationFailed

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
PASSWORD_TYPES = {
    f"{_PROFILE}#PasswordText": PasswordType.TEXT,
    f"{_PROFILE}#PasswordDigest": PasswordType.DIGEST,
}
SECURITY_TAG = f"{{{WSSE}}}Security"
BASE64_ENCODING = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)


def read_username_token(header_elements: list[etree._Element] | None) -> UsernameToken | None:
    """The UsernameToken of the request, None if there is no Security header."""
    securities = [element for element in header_elements or () if element.tag == SECURITY_TAG]
    if not securities:
        return None
    if len(securities) > 1:
        raise AuthenticationFailed("a request may carry only one WS-Security header")
    tokens = securities[0].findall(f"{{{WSSE}}}UsernameToken")
    if len(tokens) != 1:
        raise AuthenticationFailed("the WS-Security header must hold exactly one UsernameToken")
    token = tokens[0]

    username = _text(token, f"{{{WSSE}}}Username")
    password_element = token.find(f"{{{WSSE}}}Password")
    if not username or password_element is None:
        raise AuthenticationFailed("the UsernameToken needs a Username and a Password")
    password_type = PASSWORD_TYPES.get(
        (password_element.get("Type") or f"{_PROFILE}#PasswordText").strip()
    )
    if password_type is None:
        raise AuthenticationFailed("the Password Type must be PasswordText or PasswordDigest")

    nonce_element = token.find(f"{{{WSSE}}}Nonce")
    nonce = None
    if nonce_element is not None:
        encoding = nonce_element.get("EncodingType") or BASE64_ENCODING
        if encoding != BASE64_ENCODING:
            raise AuthenticationFailed("the Nonce must be Base64Binary encoded")
        try:
            nonce = base64.b64decode((nonce_element.text or "").strip(), validate=True)
        except (binascii.Error, ValueError):
            raise AuthenticationFailed("the Nonce is not valid base64") from None
    created = _text(token, f"{{{WSU}}}Created")
    return UsernameToken(
        username=username.strip(),
        password=password_element.text or "",
        password_type=password_type,
        nonce=nonce,
        created=created,
    )


def _text(parent: etree._Element, tag: str) -> str | None:
    element = parent.find(tag)
    return None if element is None else (element.text or "")
