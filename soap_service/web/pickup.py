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

Every POST carries the CSRF token (context.py); the session is an opaque cookie whose
hash the database keeps. Cookies are Secure, HttpOnly, SameSite=Lax, host-only. The
link's token is a secret: it is never logged. A wrong, expired or withdrawn link gets a
plain page, never a trace.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import nh3
from flask import Blueprint, g, request, url_for
from flask_babel import lazy_gettext
from markupsafe import Markup
from werkzeug.routing import BaseConverter
from werkzeug.wrappers import Response

from soap_service.domain.model import Language, MessageType
from soap_service.domain.pickup import (
    MIN_PASSWORD_LENGTH,
    SESSION_LIFETIME,
    DecisionNeeded,
    LinkIdentity,
    LoginRefused,
    PickupRefused,
    PickupService,
    RegistrationRefused,
    SecondFactorNeeded,
)
from soap_service.web.access import second_factor_page
from soap_service.web.context import (
    SESSION_COOKIE,
    csrf_matches,
    current_person,
    services,
    set_cookie,
)
from soap_service.web.pages import (
    REGISTRATION_ERRORS,
    choice_query,
    chosen_language,
    failed,
    notice,
    page,
    see,
)

log = logging.getLogger("soap_service.pickup")

# A sender's HTML body, without anything that runs or loads: no images (they would tell
# the sender when the message is read, and from where), no styles, no forms.
_HTML_TAGS = nh3.ALLOWED_TAGS - {"img", "map", "area"}

LOGIN_ERRORS = {
    LoginRefused.WRONG: (lazy_gettext("The password is wrong."), 401),
    LoginRefused.LOCKED: (
        lazy_gettext("Too many wrong passwords. Try again in 15 minutes."),
        429,
    ),
}


class _TokenConverter(BaseConverter):
    # The token's own shape (256 bits, base64url): nothing else reaches a handler or a header.
    regex = r"[A-Za-z0-9_-]{43}"


class _PositionConverter(BaseConverter):
    regex = r"[1-9][0-9]{0,2}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(value)


blueprint = Blueprint("pickup", __name__)
blueprint.record_once(
    lambda state: state.app.url_map.converters.update(
        token=_TokenConverter, position=_PositionConverter
    )
)


def clean_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=_HTML_TAGS,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


# GET.


@blueprint.get("/<token:token>")
def view(token: str) -> Response:
    service = _service()
    current_person()  # a logged-in reader's time zone
    shown = service.view(token, _session())
    g.language = shown.language
    language = chosen_language() or shown.language
    if isinstance(shown, DecisionNeeded):
        account = _session_address(service)
        return page("decide", language, **_values(token, account=account), decision=shown)
    account = None if shown.type is MessageType.CONFIDENTIAL else _session_address(service)
    html_body = None if shown.html_body is None else Markup(clean_html(shown.html_body))
    # One body at a time: the formatted one the sender wrote, or on request the plain text.
    return page(
        "message",
        language,
        **_values(token, account=account),
        message=shown,
        html_body=html_body,
        plain_text=request.args.get("view") == "text",
    )


@blueprint.get("/<token:token>/<position:position>")
def attachment(token: str, position: int) -> Response:
    file = _service().attachment(token, position, _session())
    return Response(
        file.content,
        content_type="application/octet-stream",
        headers={"Content-Disposition": _disposition(file.filename)},
    )


@blueprint.route("/<token:token>/register", methods=["GET", "POST"])
def register(token: str) -> Response:
    if request.method == "POST":
        return _sign_in(token, "register")
    identity = _service().identity(token)
    g.language = identity.language
    if identity.has_account:
        return notice("exists", identity.language)
    return _register_form(token, identity, None)


# POST.


@blueprint.post("/<token:token>/login")
def login(token: str) -> Response:
    return _sign_in(token, "login")


@blueprint.post("/<token:token>/decision")
def decision(token: str) -> Response:
    refused = _refuse_forged(token)
    if refused is not None:
        return refused
    choice = request.form.get("choice")
    service = _service()
    if choice == "refuse":
        # A refusal is final and the sender is told: it is asked again, on a page of its
        # own, before it counts.
        shown = service.view(token, _session())
        if isinstance(shown, DecisionNeeded):
            g.language = shown.language
            return page(
                "refuse",
                chosen_language() or shown.language,
                **_values(token, account=_session_address(service)),
                decision=shown,
            )
    # Only an explicit choice counts.
    if choice in ("accept", "refuse-confirmed"):
        service.decide(
            token,
            _session(),
            accept=choice == "accept",
            always_accept=request.form.get("always") == "yes",
        )
    return see(_link(token) + choice_query())


@blueprint.post("/<token:token>/logout")
def logout(token: str) -> Response:
    refused = _refuse_forged(token)
    if refused is not None:
        return refused
    session = _session()
    if session:
        _service().logout(session)
    response = see(_link(token) + choice_query())
    set_cookie(response, SESSION_COOKIE, "", max_age=0)
    return response


def _sign_in(token: str, action: str) -> Response:
    """Log in or register: a new session, or the form again with what was wrong."""
    refused = _refuse_forged(token)
    if refused is not None:
        return refused
    service = _service()
    identity = service.identity(token)
    g.language = identity.language
    old_session = _session()
    if old_session:  # a new session replaces the browser's old one
        service.logout(old_session)
    form = request.form
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
    except SecondFactorNeeded as needed:  # the code from the app, then the message
        return second_factor_page(needed.account_id, _link(token))
    except LoginRefused as refused_login:
        log.info("pickup login refused: %s", refused_login.reason)
        return _login_form(token, identity, refused_login.reason)
    except RegistrationRefused as refused_registration:
        log.info("pickup registration refused: %s", refused_registration.reason)
        if refused_registration.reason == RegistrationRefused.EXISTS:
            return notice("exists", identity.language)
        return _register_form(
            token, identity, refused_registration.reason, consent=form.get("consent") == "yes"
        )
    response = see(_link(token) + choice_query())
    set_cookie(response, SESSION_COOKIE, session, max_age=int(SESSION_LIFETIME.total_seconds()))
    return response


@blueprint.errorhandler(PickupRefused)
def _refused(refused: PickupRefused) -> Response:
    """A refused link shows what must come first (the login or registration form) or the
    notice of its reason."""
    log.info("pickup refused: %s", refused.reason)
    token = (request.view_args or {}).get("token", "")
    try:
        if refused.reason in (PickupRefused.LOGIN, PickupRefused.REGISTER):
            identity = _service().identity(token)
            if refused.reason == PickupRefused.LOGIN:
                return _login_form(token, identity, None)
            return _register_form(token, identity, None)
        return notice(refused.reason, refused.language, about=refused.about)
    except PickupRefused as again:  # the link changed meanwhile
        return notice(again.reason, again.language)
    except Exception as error:  # as any failure, told in the refused message's language
        g.language = refused.language
        return failed(error)


# Parts.


def _login_form(token: str, identity: LinkIdentity, error: str | None) -> Response:
    message, status = LOGIN_ERRORS[error] if error else (None, 200)
    return _form("login", token, identity, message, status)


def _register_form(
    token: str, identity: LinkIdentity, error: str | None, *, consent: bool = False
) -> Response:
    message = REGISTRATION_ERRORS[error] if error else None
    return _form("register", token, identity, message, 400 if error else 200, consent=consent)


def _form(
    name: str, token: str, identity: LinkIdentity, error: Any, status: int, consent: bool = False
) -> Response:
    """The login or registration page for the link's address, with the error said (and
    the consent given kept)."""
    return page(
        name,
        chosen_language() or identity.language,
        status=status,
        **_values(token),
        identity=identity,
        error=error,
        min_password=MIN_PASSWORD_LENGTH,
        consent=consent,
    )


def _values(token: str, *, account: str | None = None) -> dict[str, Any]:
    # Absolute: a form page is also shown at <link>/login after a wrong password.
    return {"link": _link(token), "account": account}


def _link(token: str) -> str:
    return url_for("pickup.view", token=token)


def _refuse_forged(token: str) -> Response | None:
    """The notice for a form without the browser's CSRF token; None for a genuine one."""
    if csrf_matches(request.form.to_dict()):
        return None
    log.info("pickup form refused: CSRF token missing or wrong")
    return notice("csrf", _language_of(token))


def _language_of(token: str) -> Language | None:
    """The language of a genuine link's message, for a page about a refused form."""
    try:
        return _service().identity(token).language
    except Exception:  # any link, any state: the page falls back to the reader's
        return None


def _service() -> PickupService:
    return services().pickup


def _session() -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


def _session_address(service: PickupService) -> str | None:
    session = _session()
    return service.session_address(session) if session else None


def _disposition(filename: str) -> str:
    """attachment, with an ASCII fallback name and the real one (RFC 6266)."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
