"""The Spyne application: operations, protocol, published WSDL, and its WSGI adapter."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import spyne.const
from spyne import Application
from spyne.server.wsgi import WsgiApplication

from soap_service.errors import FaultCode
from soap_service.soap.codec import Codec
from soap_service.soap.faults import (
    FAULT_CONTENT_TYPE,
    FAULT_STATUS,
    ServiceFault,
    as_service_error,
    render_fault,
)
from soap_service.soap.protocol import SCOPE_KEY, CodecSoap11, GuardedSoap11
from soap_service.soap.service import MessagingService
from soap_service.soap.types import TNS
from soap_service.soap.wsdl import schema_of, tidy_wsdl

log = logging.getLogger(__name__)

# Spyne runs a full gc.collect() when a request context closes, at most once a second:
# a 50-100 ms stall of the worker each second. Python's own collector is enough.
spyne.const.MIN_GC_INTERVAL = float("inf")

SERVICE_DOCUMENTATION = (
    "soap-service messaging API, version 1 (SOAP 1.1, document/literal wrapped). "
    "Authenticate every request with a WS-Security UsernameToken (PasswordText over TLS, "
    "or PasswordDigest with Nonce and Created). Faults carry a faultcode naming the cause: "
    + ", ".join(code for name, code in vars(FaultCode).items() if name.isupper())
    + ". Server.Unavailable is worth retrying; resending with the same Reference is safe."
)


class SoapEndpoint:
    """Builds the application once; `wsdl` is the document served at ?wsdl."""

    def __init__(self, public_url: str) -> None:
        codec = Codec(TNS)
        self._in_protocol = GuardedSoap11(codec)
        self.application = Application(
            [MessagingService],
            tns=TNS,
            name="MessagingPort",  # portType, binding and port; the service is MessagingService
            in_protocol=self._in_protocol,
            out_protocol=CodecSoap11(codec),
        )
        self.wsgi = _SpyneWsgi(self.application)
        self.wsgi.doc.wsdl11.build_interface_document(public_url)
        self.wsdl = tidy_wsdl(self.wsgi.doc.wsdl11.get_interface_document(), SERVICE_DOCUMENTATION)
        self.schema = schema_of(self.wsdl)
        self._in_protocol.use_schema(self.schema)


class _SpyneWsgi(WsgiApplication):
    def handle_error(
        self, p_ctx: Any, others: Any, error: BaseException, start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """Every error, Spyne's or ours, leaves through `render_fault`."""
        service_error = as_service_error(error)
        p_ctx.transport.req_env[SCOPE_KEY].outcome = service_error.code
        if not isinstance(error, ServiceFault):  # ours were logged where they were raised
            log.warning("spyne fault %s mapped to %s", type(error).__name__, service_error.code)
        body = render_fault(service_error)
        p_ctx.close()
        start_response(
            FAULT_STATUS,
            [("Content-Type", FAULT_CONTENT_TYPE), ("Content-Length", str(len(body)))],
        )
        return [body]
