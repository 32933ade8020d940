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


def test_operations_follow_the_wrapped_convention_that_dotnet_unwraps() -> None:
    """What .NET's wsdl.exe and svcutil need to generate `SendMessage(message)` rather than
    `SendMessage(SendMessage)`: each message one part named `parameters`, whose element is
    named after the operation (its response after the operation plus `Response`), a
    sequence of elements."""
    from lxml import etree

    wsdl = "{http://schemas.xmlsoap.org/wsdl/}"
    xsd = "{http://www.w3.org/2001/XMLSchema}"
    root = etree.fromstring((REPO / "wsdl" / "messaging-v1.wsdl").read_bytes())
    schema = root.find(f"{wsdl}types/{xsd}schema")
    types = {t.get("name"): t for t in schema.findall(f"{xsd}complexType")}
    elements = {e.get("name"): e.get("type") for e in schema.findall(f"{xsd}element")}
    messages = {m.get("name"): m.findall(f"{wsdl}part") for m in root.iter(f"{wsdl}message")}
    operations = [op.get("name") for op in root.find(f"{wsdl}portType")]
    assert operations, "no operations"
    for operation in operations:
        for name in (operation, f"{operation}Response"):
            [part] = messages[name]
            assert (part.get("name"), part.get("element")) == ("parameters", f"tns:{name}")
            wrapper = types[elements[name].partition(":")[2]]
            assert [child.tag for child in wrapper] == [f"{xsd}sequence"], name
            assert wrapper.find(f"{xsd}attribute") is None


def test_a_client_of_the_previous_wsdl_sends_the_same_bytes() -> None:
    """Naming the parts `parameters` changed no request: zeep, from the WSDL before and
    after, writes every operation's envelope byte for byte the same."""
    import zeep
    from lxml import etree

    previous = REPO / "tests" / "e2e" / "wsdl" / "messaging-v1-before-wrapped-parts.wsdl"
    calls = {
        "SendMessage": {
            "Message": {
                "Reference": "payroll-2026-12-0001",
                "Type": "confidential",
                "Recipients": {"Recipient": [{"Address": "anna@example.ch"}]},
                "Subject": "Lohnabrechnung",
                "TextBody": "Guten Tag",
                "Attachments": {
                    "Attachment": [
                        {"FileName": "a.pdf", "ContentType": "application/pdf", "Content": b"%PDF"}
                    ]
                },
            }
        },
        "GetStatus": {"MessageId": "0" * 32},
        "CancelMessage": {"Reference": "payroll-2026-12-0001"},
        "GetReceipt": {"Kind": "pickup", "MessageId": "0" * 32, "RecipientAddress": "a@b.ch"},
    }

    def envelopes(wsdl: str) -> dict[str, bytes]:
        client = zeep.Client(wsdl)
        return {
            name: etree.tostring(client.create_message(client.service, name, **arguments))
            for name, arguments in calls.items()
        }

    before, after = envelopes(str(previous)), envelopes(str(REPO / "wsdl" / "messaging-v1.wsdl"))
    assert set(after) == set(calls)
    assert before == after
    assert b"<ns0:SendMessage" in after["SendMessage"]
