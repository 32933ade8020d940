"""The recipient's pickup pages: plain server-rendered HTML, no JavaScript, no remote
content, in the message's language (or the one the reader picks).

    GET  <path><token>               the message, or what must come first: log in,
                                     register, or accept/refuse a registered message
    GET  <path><token>/<position>    one attachment, as a download
    GET  <path><token>/register      the registration form (the link proves the address)
    POST <path><token>/register      password twice and consent: account and session
    POST <path><token>/login         password: session
    POST <path><token>/decision      choice=accept|refuse, always=yes (auto-accept)
    POST <path><token>/logout

Every POST carries a CSRF token that must equal the CSRF cookie (double submit); the
session is an opaque cookie whose hash the database keeps. Cookies are Secure, HttpOnly,
SameSite=Lax, host-only. The link's token is a secret: it is never logged. Every answer
forbids caching, framing, referrers and any script; a wrong, expired or withdrawn link
gets a plain page, never a trace.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from soap_service.domain.model import Language, MessageType
from soap_service.domain.pickup import (
    SESSION_LIFETIME,
    DecisionNeeded,
    LoginRefused,
    PickupRefused,
    PickupService,
    RegistrationRefused,
)
from soap_service.errors import ServiceError
from soap_service.logs import describe_exception
from soap_service.web.pickup_render import PickupAnswer
from soap_service.web.pickup_request import SESSION_COOKIE, PickupRequest, cookie, read_form
from soap_service.web.responses import StartResponse

log = logging.getLogger("soap_service.pickup")

# The token's own shape (256 bits, base64url): nothing else reaches a handler or a header.
_PATH = re.compile(
    r"(?P<token>[A-Za-z0-9_-]{43})(?:/(?:(?P<position>[1-9][0-9]{0,2})|(?P<action>[a-z]+)))?"
)
_ACTIONS = {"register", "login", "decision", "logout"}


class PickupPages:
    """The pages under `path`: each request is routed by its path and method to a handler."""

    def __init__(self, *, path: str, default_language: Language) -> None:
        self.path = path  # e.g. "/m/", from the configured pickup base URL
        self._default_language = default_language

    def handles(self, path: str) -> bool:
        return path.startswith(self.path)

    def __call__(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        service: Callable[[], PickupService],
    ) -> Iterable[bytes]:
        request = PickupRequest(environ)
        answer = PickupAnswer(
            start_response, request, path=self.path, default_language=self._default_language
        )
        matched = _PATH.fullmatch(environ.get("PATH_INFO", "")[len(self.path) :])
        if matched is None or (matched["action"] and matched["action"] not in _ACTIONS):
            return answer.notice(PickupRefused.UNKNOWN, None)
        token, position, action = matched["token"], matched["position"], matched["action"]
        allowed = "GET, POST" if action == "register" else ("POST" if action else "GET")
        if request.method not in allowed.split(", "):
            return answer.not_allowed(allowed)
        visit = _Visit(request, answer, service, token)
        try:
            if request.method == "POST":
                return _post(visit, action)
            if position:
                return _attachment(visit, int(position))
            if action == "register":
                return _registration(visit)
            return _view(visit)
        except Exception as error:
            return _failed(visit, error, visit.language)


@dataclass
class _Visit:
    """One request to a link: what its handler needs to answer it."""

    request: PickupRequest
    answer: PickupAnswer
    # Called only when a handler needs the service (a refused path or method never does).
    service: Callable[[], PickupService]
    token: str
    # The message's, once a handler has learnt it: a failure after that is told in it.
    language: Language | None = None


def _failed(visit: _Visit, error: Exception, language: Language | None) -> Iterable[bytes]:
    """The one place where an error becomes a page.

    A refused link shows what must come first (the login or registration form) or the
    notice of its reason; a ServiceError means the database is away (503, try later);
    anything else is a failure of ours (500; the log names its type and place, not its
    message). `language`: the message's, if known, for the notice."""
    if isinstance(error, PickupRefused):
        log.info("pickup refused: %s", error.reason)
        try:
            return _refused(visit, error)
        except PickupRefused as again:  # the link changed meanwhile
            return visit.answer.notice(again.reason, again.language)
        except Exception as exc:  # as any failure, told in the refused message's language
            return _failed(visit, exc, error.language)
    if isinstance(error, ServiceError):  # the database is away
        log.warning("pickup unavailable: %s", error.message)
        return visit.answer.notice("unavailable", language)
    log.error("pickup failed: %s", describe_exception(error))
    return visit.answer.notice("error", language)


def _refused(visit: _Visit, refused: PickupRefused) -> Iterable[bytes]:
    """What a refused link shows: the form that must come first, or its reason's notice."""
    if refused.reason in (PickupRefused.LOGIN, PickupRefused.REGISTER):
        identity = visit.service().identity(visit.token)
        if refused.reason == PickupRefused.LOGIN:
            return visit.answer.login_form(visit.token, identity, None)
        return visit.answer.register_form(visit.token, identity, None)
    return visit.answer.notice(refused.reason, refused.language)


# GET.


def _view(visit: _Visit) -> Iterable[bytes]:
    service = visit.service()
    shown = service.view(visit.token, visit.request.session)
    language = visit.request.chosen or shown.language
    if isinstance(shown, DecisionNeeded):
        account = _session_address(service, visit.request)
        return visit.answer.decision(visit.token, shown, language, account)
    account = (
        None if shown.type is MessageType.CONFIDENTIAL else _session_address(service, visit.request)
    )
    return visit.answer.message(visit.token, shown, language, account)


def _attachment(visit: _Visit, position: int) -> Iterable[bytes]:
    file = visit.service().attachment(visit.token, position, visit.request.session)
    return visit.answer.download(file)


def _registration(visit: _Visit) -> Iterable[bytes]:
    identity = visit.service().identity(visit.token)
    visit.language = identity.language
    if identity.has_account:
        return visit.answer.notice("exists", identity.language)
    return visit.answer.register_form(visit.token, identity, None)


# POST.


def _post(visit: _Visit, action: str) -> Iterable[bytes]:
    form = read_form(visit.request.environ)
    if form is None or not visit.request.csrf_matches(form):
        log.info("pickup form refused: CSRF token missing or wrong")
        return visit.answer.notice("csrf", _language_of(visit.service, visit.token))
    service = visit.service()
    if action == "logout":
        if visit.request.session:
            service.logout(visit.request.session)
        visit.request.set_cookies.append(cookie(SESSION_COOKIE, "", max_age=0))
        return visit.answer.see(visit.token)
    if action == "decision":
        choice = form.get("choice")
        # Only an explicit choice counts: a refusal is final and the sender is told.
        if choice in ("accept", "refuse"):
            service.decide(
                visit.token,
                visit.request.session,
                accept=choice == "accept",
                always_accept=form.get("always") == "yes",
            )
        return visit.answer.see(visit.token)
    return _sign_in(visit, service, action, form)


def _sign_in(
    visit: _Visit, service: PickupService, action: str, form: dict[str, str]
) -> Iterable[bytes]:
    """Log in or register: a new session, or the form again with what was wrong."""
    token, answer = visit.token, visit.answer
    identity = service.identity(token)
    if visit.request.session:  # a new session replaces the browser's old one
        service.logout(visit.request.session)
    try:
        if action == "login":
            session = service.login(token, form.get("password", ""))
        else:
            session = service.register(
                token,
                form.get("password", ""),
                form.get("repeated", ""),
                consent=form.get("consent") == "yes",
            )
    except LoginRefused as refused:
        log.info("pickup login refused: %s", refused.reason)
        return answer.login_form(token, identity, refused.reason)
    except RegistrationRefused as refused:
        log.info("pickup registration refused: %s", refused.reason)
        if refused.reason == RegistrationRefused.EXISTS:
            return answer.notice("exists", identity.language)
        return answer.register_form(token, identity, refused.reason)
    max_age = int(SESSION_LIFETIME.total_seconds())
    visit.request.set_cookies.append(cookie(SESSION_COOKIE, session, max_age=max_age))
    return answer.see(token)


def _language_of(service: Callable[[], PickupService], token: str) -> Language | None:
    """The language of a genuine link's message, for a page about a refused form."""
    try:
        return service().identity(token).language
    except Exception:  # any link, any state: the page falls back to the reader's
        return None


def _session_address(service: PickupService, request: PickupRequest) -> str | None:
    return service.session_address(request.session) if request.session else None
