"""`make wsdl-check` in a test: the committed WSDL is what the code generates."""

from __future__ import annotations

from soap_service.soap.application import SoapEndpoint
from tests.support import REPO

CANONICAL_URL = "https://localhost:8443/soap/v1"  # the Makefile's CANONICAL_URL


def test_committed_wsdl_matches_the_code() -> None:
    generated = SoapEndpoint(CANONICAL_URL).wsdl
    committed = (REPO / "wsdl" / "messaging-v1.wsdl").read_bytes()
    assert generated == committed, "run `make wsdl` and commit wsdl/messaging-v1.wsdl"


def test_the_public_url_is_the_address() -> None:
    wsdl = SoapEndpoint("https://soap.example.ch/api/v1").wsdl
    assert b'location="https://soap.example.ch/api/v1"' in wsdl
    assert b"localhost" not in wsdl
