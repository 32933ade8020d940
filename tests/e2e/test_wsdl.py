"""The served WSDL is the committed one, points at the public URL, and is generator-friendly."""

from __future__ import annotations

from lxml import etree

from tests.support import REPO, ServiceProcess

WSDL_FILE = REPO / "wsdl" / "messaging-v1.wsdl"
WSDL = "http://schemas.xmlsoap.org/wsdl/"
SOAP11_BINDING = "http://schemas.xmlsoap.org/wsdl/soap/"
XSD = "http://www.w3.org/2001/XMLSchema"


def served_wsdl(service: ServiceProcess) -> bytes:
    response = service.session().get(f"{service.url}?wsdl", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/xml")
    return response.content


def test_served_wsdl_is_the_committed_file_with_the_configured_address(
    service: ServiceProcess,
) -> None:
    served = served_wsdl(service)
    committed = WSDL_FILE.read_bytes()

    address = etree.fromstring(served).find(
        f"{{{WSDL}}}service/{{{WSDL}}}port/{{{SOAP11_BINDING}}}address"
    )
    assert address is not None
    assert address.get("location") == service.url  # the configured public URL
    canonical = (
        etree.fromstring(committed)
        .find(f"{{{WSDL}}}service/{{{WSDL}}}port/{{{SOAP11_BINDING}}}address")
        .get("location")
    )
    # Byte for byte, once the one configured value is put back.
    assert served.replace(service.url.encode(), canonical.encode()) == committed


def test_wsdl_is_also_served_at_dot_wsdl(service: ServiceProcess) -> None:
    response = service.session().get(f"{service.url}.wsdl", timeout=30)
    assert response.content == served_wsdl(service)


def test_wsdl_declares_no_unused_namespaces_and_no_soap12(service: ServiceProcess) -> None:
    served = served_wsdl(service)
    root = etree.fromstring(served)
    assert set(root.nsmap) == {"wsdl", "xs", "tns", "wsdlsoap11"}
    assert b"soap12" not in served and b"2003/05/soap-envelope" not in served


def test_required_fields_are_plain_and_optional_fields_not_nillable(
    service: ServiceProcess,
) -> None:
    root = etree.fromstring(served_wsdl(service))
    elements = {
        (parent.get("name"), element.get("name")): element
        for parent in root.iter(f"{{{XSD}}}complexType")
        for element in parent.iter(f"{{{XSD}}}element")
    }
    assert all(element.get("nillable") is None for element in elements.values())
    for required in [
        ("OutgoingMessage", "Reference"),
        ("OutgoingMessage", "Type"),
        ("OutgoingMessage", "Recipients"),
        ("OutgoingMessage", "Subject"),
        ("OutgoingMessage", "TextBody"),
        ("Attachment", "Content"),
        ("MessageStatus", "MessageId"),
        ("RecipientStatus", "Attempts"),
    ]:
        assert elements[required].get("minOccurs") is None, required
    for optional in [
        ("OutgoingMessage", "HtmlBody"),
        ("OutgoingMessage", "Attachments"),
        ("OutgoingMessage", "Language"),
        ("OutgoingMessage", "ExpiryDays"),
        ("GetStatus", "MessageId"),
        ("GetStatus", "Reference"),
        ("CancelMessage", "MessageId"),
        ("CancelMessage", "Reference"),
        ("GetReceipt", "MessageId"),
        ("GetReceipt", "Reference"),
        ("GetReceipt", "RecipientAddress"),
        ("GetStatusChanges", "Cursor"),
        ("GetStatusChanges", "PageSize"),
        ("ListMessages", "State"),
        ("ListMessages", "Cursor"),
        ("StatusChangeList", "Change"),
        ("MessageList", "Message"),
        ("MessageList", "NextCursor"),
    ]:
        assert elements[optional].get("minOccurs") == "0", optional
    assert elements[("OutgoingMessage", "ExpiryDays")].get("type") == "xs:int"
    assert elements[("OutgoingMessage", "Type")].get("type") == "tns:MessageType"
    assert elements[("RecipientList", "Recipient")].get("maxOccurs") == "100"
    assert elements[("SendMessages", "Message")].get("maxOccurs") == "100"
    assert elements[("SendMessages", "Message")].get("minOccurs") is None  # 1
    assert elements[("MessageList", "Message")].get("maxOccurs") == "500"
    assert elements[("StatusChangeList", "Change")].get("maxOccurs") == "1000"


def test_operations_are_documented(service: ServiceProcess) -> None:
    root = etree.fromstring(served_wsdl(service))
    docs = {
        operation.get("name"): operation.findtext(f"{{{WSDL}}}documentation")
        for operation in root.iter(f"{{{WSDL}}}operation")
        if operation.getparent().tag == f"{{{WSDL}}}portType"
    }
    assert set(docs) == {
        "SendMessage",
        "SendMessages",
        "GetStatus",
        "GetStatusChanges",
        "ListMessages",
        "CancelMessage",
        "GetReceipt",
    }
    assert "up to 100 messages" in docs["SendMessages"]
    assert "exactly once" in docs["GetStatusChanges"]
    assert "newest first" in docs["ListMessages"]
    assert "Reference" in docs["SendMessage"]
    assert "exactly one" in docs["GetStatus"]
    assert "withdrawn" in docs["CancelMessage"]
    assert "signed PDF receipt" in docs["GetReceipt"]
