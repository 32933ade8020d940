"""The WSGI application: the SOAP endpoint (the guard before Spyne, one line of log per
request), the health check, and the pages (site.py) for every other path.

It is handed what it uses (the settings, the SOAP endpoint, a way to open one request's
scope of domain services, a database check): the composition root (container.py) builds it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from soap_service import crypto
from soap_service.domain.model import Account
from soap_service.errors import MalformedRequest, MessageTooLarge, ServiceError
from soap_service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from soap_service.metrics import Metrics
from soap_service.settings import Settings
from soap_service.soap.application import SoapEndpoint
from soap_service.soap.call import DomainServices, SoapCall
from soap_service.soap.faults import FAULT_CONTENT_TYPE, FAULT_STATUS, fault_for
from soap_service.web.context import CLIENT_ADDRESS, PageScope
from soap_service.web.guard import GuardLimits, declared_length, discard_body, read_envelope
from soap_service.web.responses import StartResponse, respond
from soap_service.web.site import create_site

log = logging.getLogger("soap_service.requests")

# The WSDL and SOAP 1.1 answers.
XML_CONTENT_TYPE = "text/xml; charset=utf-8"


class RequestScope(DomainServices, PageScope, Protocol):
    """One request's domain services on one database connection (container.RequestScope),
    for the SOAP channel and the pages; `close()` gives the connection back."""


@dataclass
class _SoapLogLine:
    """What the request's one log line says; never any content."""

    operation: str | None = None
    account: Account | None = None
    outcome: str = "ok"  # or the fault code
    body_format: str = "-"  # xml or mtom, once the guard has read the body


class WebApp:
    def __init__(
        self,
        *,
        settings: Settings,
        endpoint: SoapEndpoint,
        open_scope: Callable[[], RequestScope],
        check_database: Callable[[], None],
        metrics: Metrics | None = None,
        metrics_page: Callable[[], bytes] | None = None,
    ) -> None:
        self._metrics = metrics
        self._metrics_page = metrics_page
        self._endpoint = endpoint
        self._open_scope = open_scope
        self._check_database = check_database
        self._settings = settings
        self._soap_path = settings.soap_path
        self._guard_limits = GuardLimits.for_operations(
            max_request_bytes=settings.max_request_bytes,
            max_binary_bytes=settings.limits.max_attachment_bytes,
            binary_tags=endpoint.schema.binary_tags,
            operation_elements=endpoint.operation_elements,
            operation_children=endpoint.operation_children,
        )
        # Every other path: the pages (site.py).
        self._site = create_site(
            pickup_path=urlsplit(settings.delivery.pickup_base_url).path,
            default_language=settings.default_language,
            limits=settings.limits,
            open_scope=open_scope,
            operator=settings.operator,
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
                return respond(start_response, "200 OK", XML_CONTENT_TYPE, self._endpoint.wsdl)
            return respond(
                start_response,
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                b"POST SOAP 1.1 requests here; GET ?wsdl for the WSDL.\n",
                [("Allow", "GET, POST")],
            )
        if path == "/health" and method in ("GET", "HEAD"):
            return self._health(start_response)
        if path == "/metrics" and self._settings.metrics_token and method in ("GET", "HEAD"):
            return self._metrics_answer(environ, start_response)
        environ[CLIENT_ADDRESS] = client_address(environ, self._settings.trusted_proxies)
        answer: Iterable[bytes] = self._site(environ, start_response)
        return answer

    def _health(self, start_response: StartResponse) -> Iterable[bytes]:
        try:
            self._check_database()
        except ServiceError:
            body = json.dumps({"status": "unavailable", "database": "unreachable"}).encode()
            return respond(start_response, "503 Service Unavailable", "application/json", body)
        return respond(start_response, "200 OK", "application/json", b'{"status": "ok"}')

    def _metrics_answer(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """The metrics, for the holder of the operator's token only (Prometheus sends it
        as `authorization: {credentials: ...}`)."""
        token = self._settings.metrics_token or ""
        given = environ.get("HTTP_AUTHORIZATION", "")
        if not (self._metrics_page and crypto.constant_time_equal(given, f"Bearer {token}")):
            return respond(
                start_response,
                "401 Unauthorized",
                "text/plain; charset=utf-8",
                b"the metrics need the operator's bearer token\n",
                [("WWW-Authenticate", 'Bearer realm="metrics"')],
            )
        try:
            body = self._metrics_page()
        except ServiceError:
            body = b"the database is unreachable\n"
            return respond(start_response, "503 Service Unavailable", "text/plain", body)
        return respond(start_response, "200 OK", METRICS_CONTENT_TYPE, body)

    def _soap(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        scope = self._open_scope()
        line = _SoapLogLine()
        try:
            body = self._answer(environ, scope, line)
            return respond(start_response, "200 OK", XML_CONTENT_TYPE, body)
        except Exception as exc:
            fault = fault_for(exc)
            close = False
            if line.body_format == "-":
                # Refused while the guard was reading: a client still sending reads our
                # answer only once its body is out. The rest is dropped (a bounded
                # amount), and the connection closed unless that reached its end.
                try:
                    close = not self._discard_unread(environ) or isinstance(exc, MessageTooLarge)
                except Exception as lost:  # the client went away meanwhile
                    fault, close = fault_for(lost), True
            line.outcome = fault.code
            extra = [("Connection", "close")] if close else []
            return respond(start_response, FAULT_STATUS, FAULT_CONTENT_TYPE, fault.body, extra)
        finally:
            scope.close()
            seconds = time.monotonic() - started
            if self._metrics is not None:
                self._metrics.api_call(line.operation, line.outcome, seconds)
            log.info(
                "soap op=%s account=%s outcome=%s body=%s ms=%.1f",
                line.operation or "-",
                line.account.username if line.account else "-",
                line.outcome,
                line.body_format,
                seconds * 1000,
            )

    def _answer(self, environ: dict[str, Any], scope: RequestScope, line: _SoapLogLine) -> bytes:
        """Guard, then Spyne: the answer's envelope, or the error that made the call fail."""
        guarded = read_envelope(environ, self._guard_limits)
        line.body_format = "mtom" if guarded.mtom else "xml"
        call = SoapCall(
            envelope=guarded.envelope,
            binary_parts=guarded.binary_parts,
            soap_action=environ.get("HTTP_SOAPACTION"),
            client=client_address(environ, self._settings.trusted_proxies),
            services=scope,
        )
        try:
            return self._endpoint.answer(call, environ)
        finally:
            line.operation, line.account = call.operation, call.account

    def _discard_unread(self, environ: dict[str, Any]) -> bool:
        """Drop what is left of the body, up to twice the largest request; whether that
        reached its end."""
        limit = 2 * self._settings.max_request_bytes
        try:
            length = declared_length(environ)
        except MalformedRequest:
            return False
        if length is not None and length > limit:
            return False
        return discard_body(environ, limit)


def client_address(environ: dict[str, Any], trusted_proxies: frozenset[str]) -> str | None:
    """The peer's address; behind a trusted reverse proxy, the nearest address in
    X-Forwarded-For that is not one of the trusted proxies."""
    peer: str | None = environ.get("REMOTE_ADDR") or None
    if peer not in trusted_proxies:
        return peer
    hops = [hop.strip() for hop in environ.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for hop in reversed(hops):
        if hop and hop not in trusted_proxies:
            forwarded: str = hop[:64]  # what a proxy wrote: bounded, it is only ever a key
            return forwarded
    return peer
