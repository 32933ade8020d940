"""SOAP 1.1 faults: the one place where an error becomes a fault.

Whatever goes wrong in a SOAP call (the guard refusing the request, authentication, the
schema, the domain, the database, a bug, Spyne itself) is raised, and the web application
hands it to `fault_for`: our errors keep their code and words; Spyne's own faults are
mapped to ours with fixed words, because Spyne's fault strings can quote the request's
content; anything else is logged (type and place only) and answered as an internal error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from lxml import etree
from spyne import Fault

from soap_service.errors import (
    InternalError,
    MalformedRequest,
    ServiceError,
    SoapServiceError,
    UnknownOperation,
    ValidationError,
)
from soap_service.logs import describe_exception

log = logging.getLogger(__name__)

SOAP11_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
FAULT_CONTENT_TYPE = "text/xml; charset=utf-8"
# SOAP 1.1 over HTTP answers every fault with 500 (WS-I Basic Profile R1126).
FAULT_STATUS = "500 Internal Server Error"


class CarriedError(Fault, SoapServiceError):
    """Any error of an operation, carried through Spyne's request processing (which keeps
    only its own Fault type and turns anything else into a generic one) to `fault_for`."""

    def __init__(self, error: Exception) -> None:
        Fault.__init__(self, faultcode="Server", faultstring="carried")
        self.error = error


@dataclass(frozen=True)
class SoapFault:
    code: str
    body: bytes


def fault_for(exc: BaseException) -> SoapFault:
    """The fault that answers a call that failed with `exc`."""
    error = _service_error(exc.error if isinstance(exc, CarriedError) else exc)
    return SoapFault(code=error.code, body=render_fault(error))


def entry_fault(error: ServiceError) -> tuple[str, str]:
    """The code and text of one refused entry of a batch (SendMessages): what a fault of
    the single operation would have said."""
    return error.code, error.message


def _service_error(exc: BaseException) -> ServiceError:
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, Fault):
        error = _from_spyne(str(exc.faultcode or ""))
        log.warning("spyne fault %s mapped to %s", type(exc).__name__, error.code)
        return error
    log.error("internal error: %s", describe_exception(exc))
    return InternalError("an internal error occurred")


def _from_spyne(code: str) -> ServiceError:
    if code.startswith("Client.ResourceNotFound") or code == "Client.MethodNotFound":
        return UnknownOperation("the operation is not part of this service")
    if code.startswith("Client.ValidationError") or code.startswith("Client.SchemaValidationError"):
        return ValidationError("the request does not match the service's schema")
    if code.startswith("Client"):
        return MalformedRequest("the request is not a valid SOAP 1.1 request")
    return InternalError("an internal error occurred")


def render_fault(error: ServiceError) -> bytes:
    envelope = etree.Element(etree.QName(SOAP11_ENV, "Envelope"), nsmap={"soap": SOAP11_ENV})
    body = etree.SubElement(envelope, etree.QName(SOAP11_ENV, "Body"))
    fault = etree.SubElement(body, etree.QName(SOAP11_ENV, "Fault"))
    # SOAP 1.1 codes are QNames in the envelope namespace, refined with dots.
    etree.SubElement(fault, "faultcode").text = f"soap:{error.code}"
    etree.SubElement(fault, "faultstring").text = error.message
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
