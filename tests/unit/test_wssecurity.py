"""read_username_token: the WS-Security UsernameToken out of the SOAP header elements."""

from __future__ import annotations

import base64

import pytest
from lxml import etree

from soap_service.domain.auth import PasswordType, UsernameToken
from soap_service.errors import AuthenticationFailed
from soap_service.soap.wssecurity import read_username_token

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
TEXT = f"{PROFILE}#PasswordText"
DIGEST = f"{PROFILE}#PasswordDigest"
BASE64 = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)


def header(xml: str) -> list[etree._Element]:
    """The child elements of a SOAP Header holding `xml`."""
    wrapper = etree.fromstring(
        f'<Header xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}" xmlns:other="urn:other">{xml}</Header>'
    )
    return list(wrapper)


def security(token: str) -> str:
    return (
        f'<wsse:Security soapenv:mustUnderstand="1" xmlns:soapenv="urn:env">{token}</wsse:Security>'
    )


def username_token(inner: str) -> str:
    return security(f"<wsse:UsernameToken>{inner}</wsse:UsernameToken>")


@pytest.mark.parametrize("elements", [None, [], header("<other:Trace>1</other:Trace>")])
def test_no_security_header_means_no_token(elements: list[etree._Element] | None) -> None:
    assert read_username_token(elements) is None


def test_a_security_header_in_another_namespace_is_not_ours() -> None:
    elements = header('<Security xmlns="urn:not-wsse"><UsernameToken/></Security>')
    assert read_username_token(elements) is None


def test_password_text() -> None:
    elements = header(
        username_token(
            f"<wsse:Username> acme </wsse:Username>"
            f'<wsse:Password Type="{TEXT}">s3cret &amp; more</wsse:Password>'
        )
    )
    assert read_username_token(elements) == UsernameToken(
        username="acme", password="s3cret & more", password_type=PasswordType.TEXT
    )


def test_a_password_without_type_is_password_text() -> None:
    elements = header(
        username_token("<wsse:Username>acme</wsse:Username><wsse:Password>pw</wsse:Password>")
    )
    token = read_username_token(elements)
    assert token is not None
    assert token.password_type is PasswordType.TEXT
    assert token.password == "pw"
    assert token.nonce is None
    assert token.created is None


def test_an_empty_password_is_read_as_empty() -> None:
    elements = header(username_token("<wsse:Username>acme</wsse:Username><wsse:Password/>"))
    token = read_username_token(elements)
    assert token is not None
    assert token.password == ""


def test_password_digest_with_nonce_and_created() -> None:
    nonce = bytes(range(16))
    elements = header(
        username_token(
            "<wsse:Username>acme</wsse:Username>"
            f'<wsse:Password Type=" {DIGEST} ">DIGEST==</wsse:Password>'
            f'<wsse:Nonce EncodingType="{BASE64}">\n'
            f"{base64.b64encode(nonce).decode()}\n</wsse:Nonce>"
            "<wsu:Created>2024-05-31T10:00:00.123Z</wsu:Created>"
        )
    )
    assert read_username_token(elements) == UsernameToken(
        username="acme",
        password="DIGEST==",
        password_type=PasswordType.DIGEST,
        nonce=nonce,
        created="2024-05-31T10:00:00.123Z",
    )


def test_a_nonce_without_encoding_type_is_base64() -> None:
    elements = header(
        username_token(
            "<wsse:Username>acme</wsse:Username>"
            f'<wsse:Password Type="{DIGEST}">d</wsse:Password>'
            "<wsse:Nonce>bm9uY2Utbm9uY2U=</wsse:Nonce>"
        )
    )
    token = read_username_token(elements)
    assert token is not None
    assert token.nonce == b"nonce-nonce"


def test_the_security_header_may_come_after_other_headers() -> None:
    elements = header(
        "<other:Trace>1</other:Trace>"
        + username_token("<wsse:Username>acme</wsse:Username><wsse:Password>pw</wsse:Password>")
    )
    token = read_username_token(elements)
    assert token is not None
    assert token.username == "acme"


def test_two_security_headers_are_refused() -> None:
    one = username_token("<wsse:Username>acme</wsse:Username><wsse:Password>pw</wsse:Password>")
    with pytest.raises(AuthenticationFailed, match=r"^a request may carry only one WS-Security"):
        read_username_token(header(one + one))


@pytest.mark.parametrize(
    "inner",
    [
        "",
        "<wsse:UsernameToken><wsse:Username>a</wsse:Username></wsse:UsernameToken>" * 2,
    ],
)
def test_a_security_header_needs_exactly_one_username_token(inner: str) -> None:
    with pytest.raises(AuthenticationFailed, match=r"must hold exactly one UsernameToken$"):
        read_username_token(header(security(inner)))


@pytest.mark.parametrize(
    "inner",
    [
        "<wsse:Username>acme</wsse:Username>",
        "<wsse:Password>pw</wsse:Password>",
        "<wsse:Username></wsse:Username><wsse:Password>pw</wsse:Password>",
        "<wsse:Username>acme</wsse:Username><Password>pw</Password>",
    ],
)
def test_a_missing_username_or_password_is_refused(inner: str) -> None:
    with pytest.raises(AuthenticationFailed, match=r"^the UsernameToken needs a Username and a"):
        read_username_token(header(username_token(inner)))


@pytest.mark.parametrize(
    "password_type", [f"{PROFILE}#PasswordSHA256", "PasswordText", f"{PROFILE}#passwordtext"]
)
def test_an_unknown_password_type_is_refused(password_type: str) -> None:
    inner = (
        "<wsse:Username>acme</wsse:Username>"
        f'<wsse:Password Type="{password_type}">pw</wsse:Password>'
    )
    with pytest.raises(AuthenticationFailed, match=r"must be PasswordText or PasswordDigest$"):
        read_username_token(header(username_token(inner)))


@pytest.mark.parametrize("nonce", ["not base64!", "bm9uY2U", "bm9u Y2U="])
def test_a_nonce_that_is_not_base64_is_refused(nonce: str) -> None:
    inner = (
        "<wsse:Username>acme</wsse:Username>"
        f'<wsse:Password Type="{DIGEST}">d</wsse:Password>'
        f"<wsse:Nonce>{nonce}</wsse:Nonce>"
    )
    with pytest.raises(AuthenticationFailed, match=r"^the Nonce is not valid base64$"):
        read_username_token(header(username_token(inner)))


def test_a_nonce_in_another_encoding_is_refused() -> None:
    inner = (
        "<wsse:Username>acme</wsse:Username>"
        f'<wsse:Password Type="{DIGEST}">d</wsse:Password>'
        '<wsse:Nonce EncodingType="urn:hex">00ff</wsse:Nonce>'
    )
    with pytest.raises(AuthenticationFailed, match=r"^the Nonce must be Base64Binary encoded$"):
        read_username_token(header(username_token(inner)))
