"""SOAP 1.1 faults: the one place where errors become fault envelopes.

Inside Spyne an error travels as a `ServiceFault` (Spyne only catches its own `Fault`
type at some stages); whatever Spyne raised itself is mapped to one of our errors with a
fixed message, because Spyne's fault strings can quote the request's content.
"""

from __future__ import annotations

from lxml import etree
from spyne import Fault

from soap_service.errors import (
    InternalError,
    MalformedRequest,
    ServiceError,
    UnknownOperation,
    ValidationError,
)

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
FAULT_CONTENT_TYPE = "text/xml; charset=utf-8"
# SOAP 1.1 over HTTP answers every fault with 500 (WS-I Basic Profile R1126).
FAULT_STATUS = "500 Internal Server Error"


class ServiceFault(Fault):
    """A ServiceError carried through Spyne's machinery."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(faultcode=error.code, faultstring=error.message)
        self.error = error


def as_service_error(exc: BaseException) -> ServiceError:
    """The error to report for anything raised while handling a request."""
    if isinstance(exc, ServiceFault):
        return exc.error
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, Fault):
        code = str(exc.faultcode or "")
        if code.startswith("Client.ResourceNotFound") or code == "Client.MethodNotFound":
            return UnknownOperation("the operation is not part of this service")
        if code.startswith("Client.ValidationError") or code.startswith(
            "Client.SchemaValidationError"
        ):
            return ValidationError("the request does not match the service's schema")
        if code.startswith("Client"):
            return MalformedRequest("the request is not a valid SOAP 1.1 request")
    return InternalError("an internal error occurred; the request was not processed")


def render_fault(error: ServiceError) -> bytes:
    envelope = etree.Element(etree.QName(SOAP11_ENV, "Envelope"), nsmap={"soap": SOAP11_ENV})
    body = etree.SubElement(envelope, etree.QName(SOAP11_ENV, "Body"))
    fault = etree.SubElement(body, etree.QName(SOAP11_ENV, "Fault"))
    # SOAP 1.1 codes are QNames in the envelope namespace, refined with dots.
    etree.SubElement(fault, "faultcode").text = f"soap:{error.code}"
    etree.SubElement(fault, "faultstring").text = error.message
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
