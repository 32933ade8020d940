"""The WSGI application: routes, the guard before Spyne, and one line of log per request."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from soap_service.container import Container
from soap_service.errors import InternalError, MessageTooLarge, ServiceError
from soap_service.logs import describe_exception
from soap_service.soap.application import SoapEndpoint
from soap_service.soap.faults import FAULT_CONTENT_TYPE, FAULT_STATUS, render_fault
from soap_service.soap.protocol import BINARY_PARTS_KEY, ENVELOPE_KEY, SCOPE_KEY
from soap_service.web.guard import GuardLimits, declared_length, discard_body, read_envelope
from soap_service.web.pickup import PickupPages
from soap_service.web.responses import StartResponse, respond

log = logging.getLogger("soap_service.requests")

WSDL_CONTENT_TYPE = "text/xml; charset=utf-8"


class WebApp:
    def __init__(self, container: Container, endpoint: SoapEndpoint) -> None:
        self._container = container
        self._endpoint = endpoint
        self._settings = container.settings
        self._soap_path = container.settings.soap_path
        self._guard_limits = GuardLimits(
            max_request_bytes=container.settings.max_request_bytes,
            max_binary_bytes=container.settings.limits.max_attachment_bytes,
            binary_tags=endpoint.schema.binary_tags,
        )
        self._pickup = PickupPages(
            path=urlsplit(container.settings.delivery.pickup_base_url).path,
            default_language=container.settings.default_language,
        )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if path in (self._soap_path, self._soap_path + ".wsdl"):
            if method == "POST" and path == self._soap_path:
                return self._soap(environ, start_response)
            if method in ("GET", "HEAD") and (
                path.endswith(".wsdl") or environ.get("QUERY_STRING", "").lower() == "wsdl"
            ):
                return respond(start_response, "200 OK", WSDL_CONTENT_TYPE, self._endpoint.wsdl)
            return respond(
                start_response,
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                b"POST SOAP 1.1 requests here; GET ?wsdl for the WSDL.\n",
                [("Allow", "GET, POST")],
            )
        if path == "/health" and method in ("GET", "HEAD"):
            return self._health(start_response)
        if self._pickup.handles(path):
            scope = self._container.open_scope()
            try:
                return self._pickup(environ, start_response, lambda: scope.pickup)
            finally:
                scope.close()
        return respond(start_response, "404 Not Found", "text/plain; charset=utf-8", b"not found\n")

    def _health(self, start_response: StartResponse) -> Iterable[bytes]:
        try:
            self._container.database.ping()
        except ServiceError:
            body = json.dumps({"status": "unavailable", "database": "unreachable"}).encode()
            return respond(start_response, "503 Service Unavailable", "application/json", body)
        return respond(start_response, "200 OK", "application/json", b'{"status": "ok"}')

    def _soap(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        scope = self._container.open_scope()
        try:
            try:
                guarded = read_envelope(environ, self._guard_limits)
                environ[ENVELOPE_KEY] = guarded.envelope
                environ[BINARY_PARTS_KEY] = guarded.binary_parts
                scope.body_format = "mtom" if guarded.mtom else "xml"
            except MessageTooLarge as exc:
                scope.outcome = exc.code
                return self._refuse_oversized(environ, start_response, exc)
            except ServiceError as exc:
                scope.outcome = exc.code
                return _fault(start_response, exc)
            environ[SCOPE_KEY] = scope
            # Spyne must not read the body again: the guard has consumed it.
            environ["wsgi.input"] = io.BytesIO(b"")
            environ["CONTENT_LENGTH"] = "0"
            captured: list[Any] = []

            def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
                captured[:] = [status, headers]

            body = b"".join(self._endpoint.wsgi(environ, capture))
            start_response(*captured)
            return [body]
        except Exception as exc:
            log.error("internal error: %s", describe_exception(exc))
            scope.outcome = InternalError.code
            return _fault(start_response, InternalError("an internal error occurred"))
        finally:
            scope.close()
            account = scope.account.username if scope.account else "-"
            log.info(
                "soap op=%s account=%s outcome=%s body=%s ms=%.1f",
                scope.operation or "-",
                account,
                scope.outcome,
                scope.body_format,
                (time.monotonic() - started) * 1000,
            )

    def _refuse_oversized(
        self, environ: dict[str, Any], start_response: StartResponse, error: MessageTooLarge
    ) -> Iterable[bytes]:
        # A client that is still sending only reads our answer once its body is out:
        # drop a bounded amount of it, then close the connection whatever remains.
        length = declared_length(environ)
        if length is None or length <= 2 * self._settings.max_request_bytes:
            discard_body(environ, 2 * self._settings.max_request_bytes)
        return _fault(start_response, error, close=True)


def _fault(
    start_response: StartResponse, error: ServiceError, *, close: bool = False
) -> list[bytes]:
    extra = [("Connection", "close")] if close else []
    return respond(start_response, FAULT_STATUS, FAULT_CONTENT_TYPE, render_fault(error), extra)
