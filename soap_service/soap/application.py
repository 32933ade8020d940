"""The Spyne application: operations, protocol, published WSDL, and how a call runs
through it."""

from __future__ import annotations

from typing import Any

import spyne.const
from spyne import Application
from spyne.server.wsgi import WsgiApplication, WsgiMethodContext

from soap_service.errors import FaultCode
from soap_service.soap.call import SoapCall
from soap_service.soap.codec import Codec
from soap_service.soap.protocol import CodecSoap11, GuardedSoap11
from soap_service.soap.service import MessagingService
from soap_service.soap.types import TNS
from soap_service.soap.wsdl import schema_of, tidy_wsdl

# Spyne runs a full gc.collect() when a request context closes, at most once a second:
# a 50-100 ms stall of the worker each second. Python's own collector is enough.
spyne.const.MIN_GC_INTERVAL = float("inf")

SERVICE_DOCUMENTATION = (
    "soap-service messaging API, version 1 (SOAP 1.1, document/literal wrapped). "
    "Authenticate every request with a WS-Security UsernameToken (PasswordText over TLS, "
    "or PasswordDigest with Nonce and Created). Faults carry a faultcode naming the cause: "
    + ", ".join(code for name, code in vars(FaultCode).items() if name.isupper())
    + ". Server.Unavailable is worth retrying, Client.AuthenticationThrottled after the wait "
    "its faultstring gives; resending with the same Reference is safe."
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
        self._server = _SpyneServer(self.application)
        self._server.doc.wsdl11.build_interface_document(public_url)
        self.wsdl = tidy_wsdl(
            self._server.doc.wsdl11.get_interface_document(), SERVICE_DOCUMENTATION
        )
        self.schema = schema_of(self.wsdl)
        self._in_protocol.use_schema(self.schema)
        # Each operation's request element, and the most elements a valid one holds.
        self.operation_elements = {
            tag: self.schema.element_limits[tag]
            for tag in self.application.interface.service_method_map
        }
        # And the most child elements each holds (a batch's entries).
        self.operation_children = {
            tag: self.schema.child_limits[tag]
            for tag in self.application.interface.service_method_map
        }

    def answer(self, call: SoapCall, environ: dict[str, Any]) -> bytes:
        """The answer's envelope; raises whatever made the call fail (faults.py answers it)."""
        return self._server.answer(call, environ)


class _SpyneServer(WsgiApplication):
    """Runs one call through Spyne's stages, as `WsgiApplication.handle_rpc` does, but with
    the call handed over explicitly (`ctx.udc`) and every failure raised, not answered."""

    def answer(self, call: SoapCall, environ: dict[str, Any]) -> bytes:
        ctx = WsgiMethodContext(self, environ, self.app.out_protocol.mime_type)
        ctx.udc = call
        try:
            # Our protocol raises its own errors; Spyne's stages keep theirs (and whatever
            # an operation raised, carried) in the context.
            ctx, *_ = self.generate_contexts(ctx)
            if ctx.in_error is None:
                self.get_in_object(ctx)
            if ctx.in_error is None:
                self.get_out_object(ctx)
            if ctx.in_error is not None or ctx.out_error is not None:
                # Not through a local: the error's traceback holds this frame, and a local
                # naming the error would make a cycle of them, message and all.
                raise ctx.in_error or ctx.out_error
            self.get_out_string(ctx)
            return b"".join(ctx.out_string)
        finally:
            ctx.close()
            _release(ctx)


def _release(ctx: Any) -> None:
    """Drop what the context holds of the request: Spyne's contexts are reference cycles,
    so a 30 MiB message in them would otherwise stay until the collector passes by (the
    service does not ask for collections, see MIN_GC_INTERVAL)."""
    ctx.udc = ctx.in_document = ctx.in_body_doc = ctx.in_header_doc = None
    ctx.in_object = ctx.out_object = ctx.out_document = ctx.out_body_doc = None
    ctx.out_string = ctx.in_error = ctx.out_error = None
