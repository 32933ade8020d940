"""The compiled codec reads and writes exactly what Spyne's own (de)serialiser would."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from lxml import etree
from spyne import ComplexModelBase
from spyne.util.xml import get_object_as_xml, get_xml_as_object

from soap_service.errors import InvalidBase64
from soap_service.soap import types
from soap_service.soap.application import SoapEndpoint
from soap_service.soap.codec import Codec
from tests.support import envelope, send_message_xml

TNS = types.TNS
ENDPOINT = SoapEndpoint("https://localhost:8443/soap/v1")
METHODS = ENDPOINT.application.interface.service_method_map


def descriptor(operation: str) -> Any:
    return METHODS[f"{{{TNS}}}{operation}"][0]


def plain(value: Any) -> Any:
    """A Spyne object graph as dicts, lists and strings, to compare two of them."""
    if isinstance(value, ComplexModelBase):
        return {name: plain(getattr(value, name, None)) for name in type(value)._type_info}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, tuple):  # Spyne reads base64 as a tuple of chunks
        return b"".join(value)
    if value is None or isinstance(value, bytes | int | datetime):
        return value
    return str(value)


FULL_MESSAGE = send_message_xml(
    "payroll-7",
    recipients=("a@example.ch", "b@example.ch"),
    message_type="registered",
    attachments=(
        ("one.pdf", "application/pdf", base64.b64encode(b"%PDF-1 one").decode()),
        ("two.txt", "text/plain", "dHdv\ndHdv"),  # line breaks inside base64 are allowed
    ),
    extra="<m:Language>it</m:Language><m:ExpiryDays>12</m:ExpiryDays>",
).replace("</m:TextBody>", "</m:TextBody><m:HtmlBody>&lt;p&gt;Hi&lt;/p&gt;</m:HtmlBody>")


def wrapper_element(body_xml: str) -> etree._Element:
    root = etree.fromstring(envelope(body_xml))
    return root[1][0]


@pytest.mark.parametrize(
    "body",
    [
        FULL_MESSAGE,
        send_message_xml("minimal"),
    ],
    ids=["every-field", "required-only"],
)
def test_reading_a_send_message_gives_what_spyne_gives(body: str) -> None:
    element = wrapper_element(body)
    [ours] = Codec(TNS).read_arguments(descriptor("SendMessage").in_message, element)
    spyne_message = get_xml_as_object(wrapper_element(body)[0], types.OutgoingMessage)
    assert plain(ours) == plain(spyne_message)
    if body is FULL_MESSAGE:
        assert plain(ours)["Attachments"]["Attachment"][1]["Content"] == b"twotwo"


def test_reading_get_status_arguments() -> None:
    element = wrapper_element("<m:GetStatus><m:Reference>r-1</m:Reference></m:GetStatus>")
    assert Codec(TNS).read_arguments(descriptor("GetStatus").in_message, element) == [None, "r-1"]


def test_base64_with_a_stray_character_is_refused_with_its_path() -> None:
    body = send_message_xml("x", attachments=(("a.pdf", "application/pdf", "JVBE!Ri0x"),))
    with pytest.raises(InvalidBase64, match=r"^SendMessage/Message/Attachments/Attachment/Content"):
        Codec(TNS).read_arguments(descriptor("SendMessage").in_message, wrapper_element(body))


def status(**recipient: Any) -> types.MessageStatus:
    moment = datetime(2026, 11, 28, 3, 22, 5, 123456, tzinfo=UTC)
    return types.MessageStatus(
        MessageId="0b7f6f5e-1b7e-4b0e-9d1c-2d3c4b5a6978",
        Reference="payroll-7",
        Type="confidential",
        State="in_progress",
        Language="de",
        AcceptedAt=moment,
        ExpiresAt=moment,
        Recipients=types.RecipientStatusList(
            Recipient=[
                types.RecipientStatus(
                    Address="a@example.ch",
                    State="deferred",
                    Attempts=2,
                    StateChangedAt=moment,
                    **recipient,
                ),
                types.RecipientStatus(
                    Address="b@bücher.ch", State="queued", Attempts=0, StateChangedAt=moment
                ),
            ]
        ),
    )


def canonical(element: etree._Element) -> bytes:
    standalone = etree.fromstring(etree.tostring(element))  # with its namespace declarations
    return etree.tostring(standalone, method="c14n2")


@pytest.mark.parametrize(
    "answer",
    [
        status(),
        status(
            LastAttemptAt=datetime(2026, 11, 28, 4, 0, tzinfo=UTC),
            NextAttemptAt=datetime(2026, 11, 28, 4, 5, tzinfo=UTC),
            LastError="451 4.7.1 try again <later> & soon",
        ),
    ],
    ids=["optional-fields-absent", "every-field"],
)
def test_writing_a_status_gives_what_spyne_gives(answer: types.MessageStatus) -> None:
    parent = etree.Element("parent")
    Codec(TNS).write_arguments(descriptor("SendMessage").out_message, [answer], parent)
    ours = parent[0][0]  # SendMessageResponse / SendMessageResult
    theirs = get_object_as_xml(answer, types.MessageStatus, "SendMessageResult")
    assert canonical(ours) == canonical(theirs)


def test_the_served_answer_is_a_soap_envelope_in_the_service_namespace() -> None:
    parent = etree.Element("parent")
    Codec(TNS).write_arguments(descriptor("GetStatus").out_message, [status()], parent)
    assert parent[0].tag == f"{{{TNS}}}GetStatusResponse"
    assert parent[0][0].tag == f"{{{TNS}}}GetStatusResult"
