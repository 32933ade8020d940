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

import base64
import logging
import re
from collections.abc import Callable, Iterable
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote
from zoneinfo import ZoneInfo

import jinja2
import nh3
from markupsafe import Markup

from soap_service import crypto
from soap_service.domain.model import Language, MessageType
from soap_service.domain.pickup import (
    MIN_PASSWORD_LENGTH,
    SESSION_LIFETIME,
    DecisionNeeded,
    LinkIdentity,
    LoginRefused,
    OpenedMessage,
    PickupRefused,
    PickupService,
    RegistrationRefused,
)
from soap_service.errors import ServiceError
from soap_service.logs import describe_exception
from soap_service.web.responses import StartResponse, respond
from soap_service.web.texts import TEXTS

log = logging.getLogger("soap_service.pickup")

HTML = "text/html; charset=utf-8"
# Times as the recipients (Swiss payslips) read clocks.
DISPLAY_ZONE = ZoneInfo("Europe/Zurich")
LANGUAGE_NAMES = (("de", "Deutsch"), ("fr", "Français"), ("it", "Italiano"), ("en", "English"))
SESSION_COOKIE = "__Host-pickup-session"
CSRF_COOKIE = "__Host-pickup-csrf"
MAX_FORM_BYTES = 8192

_FOLDER = Path(__file__).parent / "templates"
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_FOLDER), autoescape=True, undefined=jinja2.StrictUndefined
)
_PAGES = {
    name: _TEMPLATES.get_template(f"{name}.html.j2")
    for name in ("message", "notice", "login", "register", "decide")
}
_CSS = (_FOLDER / "pickup.css").read_text(encoding="utf-8")
# The one style sheet is inline and allowed by its hash: nothing else may style, script,
# load an image or a font, or frame the page; forms post only here.
_CSS_HASH = base64.b64encode(crypto.sha256(_CSS.encode())).decode()
SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
]
# A sender's HTML body, without anything that runs or loads: no images (they would tell
# the sender when the message is read, and from where), no styles, no forms.
_HTML_TAGS = nh3.ALLOWED_TAGS - {"img", "map", "area"}
# The token's own shape (256 bits, base64url): nothing else reaches a handler or a header.
_PATH = re.compile(
    r"(?P<token>[A-Za-z0-9_-]{43})(?:/(?:(?P<position>[1-9][0-9]{0,2})|(?P<action>[a-z]+)))?"
)
_ACTIONS = {"register", "login", "decision", "logout"}
_STATUS = {
    PickupRefused.UNKNOWN: "404 Not Found",
    PickupRefused.EXPIRED: "410 Gone",
    PickupRefused.WITHDRAWN: "410 Gone",
    PickupRefused.REFUSED: "410 Gone",
    "exists": "409 Conflict",
    "csrf": "403 Forbidden",
    "unavailable": "503 Service Unavailable",
    "error": "500 Internal Server Error",
}


def clean_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=_HTML_TAGS,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


class _Request:
    """What a pickup request carries, read once."""

    def __init__(self, environ: dict[str, Any], path: str) -> None:
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.chosen = _chosen_language(environ.get("QUERY_STRING", ""))
        self.cookies = _cookies(environ.get("HTTP_COOKIE", ""))
        self.session = self.cookies.get(SESSION_COOKIE)
        # A new CSRF secret for a browser that has none; sent along with the page.
        self.csrf = self.cookies.get(CSRF_COOKIE) or crypto.new_secret_token()
        self.set_cookies: list[str] = []
        if CSRF_COOKIE not in self.cookies:
            self.set_cookies.append(_cookie(CSRF_COOKIE, self.csrf))
        self.matched = _PATH.fullmatch(path)


class PickupPages:
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
        request = _Request(environ, environ.get("PATH_INFO", "")[len(self.path) :])
        matched = request.matched
        if matched is None or (matched["action"] and matched["action"] not in _ACTIONS):
            return self._notice(start_response, request, PickupRefused.UNKNOWN, None)
        token, action = matched["token"], matched["action"]
        allowed = "GET, POST" if action == "register" else ("POST" if action else "GET")
        if request.method not in allowed.split(", "):
            return _respond(
                start_response, "405 Method Not Allowed", HTML, b"", [("Allow", allowed)]
            )
        language: Language | None = None
        try:
            if request.method == "POST":
                form = _form(environ)
                expected = request.cookies.get(CSRF_COOKIE) or ""
                given = (form or {}).get("csrf", "")
                if len(expected) < 32 or not crypto.constant_time_equal(given, expected):
                    log.info("pickup form refused: CSRF token missing or wrong")
                    return self._notice(
                        start_response, request, "csrf", _language_of(service, token)
                    )
                return self._post(start_response, request, service(), token, action, form)
            if matched["position"]:
                file = service().attachment(token, int(matched["position"]), request.session)
                return _respond(
                    start_response,
                    "200 OK",
                    "application/octet-stream",
                    file.content,
                    [("Content-Disposition", _disposition(file.filename))],
                )
            if action == "register":
                identity = service().identity(token)
                language = identity.language
                if identity.has_account:
                    return self._notice(start_response, request, "exists", language)
                return self._register_form(start_response, request, token, identity, None)
            return self._view(start_response, request, service(), token)
        except PickupRefused as refused:
            log.info("pickup refused: %s", refused.reason)
            try:
                return self._refused(start_response, request, service, token, refused)
            except PickupRefused as again:  # the link changed meanwhile
                return self._notice(start_response, request, again.reason, again.language)
            except ServiceError as exc:
                log.warning("pickup unavailable: %s", exc.message)
                return self._notice(start_response, request, "unavailable", refused.language)
            except Exception as exc:
                log.error("pickup failed: %s", describe_exception(exc))
                return self._notice(start_response, request, "error", refused.language)
        except ServiceError as exc:  # the database is away
            log.warning("pickup unavailable: %s", exc.message)
            return self._notice(start_response, request, "unavailable", language)
        except Exception as exc:
            log.error("pickup failed: %s", describe_exception(exc))
            return self._notice(start_response, request, "error", language)

    # GET.

    def _view(
        self, start_response: StartResponse, request: _Request, service: PickupService, token: str
    ) -> Iterable[bytes]:
        shown = service.view(token, request.session)
        language = request.chosen or shown.language
        if isinstance(shown, DecisionNeeded):
            page = _PAGES["decide"].render(
                **self._values(
                    request, language, token, account=_session_address(service, request)
                ),
                decision=shown,
                received=_display(shown.accepted_at),
                expires=_display(shown.expires_at),
            )
            return self._page(start_response, request, "200 OK", page)
        return self._message(start_response, request, service, shown, token, language)

    def _message(
        self,
        start_response: StartResponse,
        request: _Request,
        service: PickupService,
        message: OpenedMessage,
        token: str,
        language: Language,
    ) -> Iterable[bytes]:
        account = (
            None if message.type is MessageType.CONFIDENTIAL else _session_address(service, request)
        )
        page = _PAGES["message"].render(
            **self._values(request, language, token, account=account),
            message=message,
            received=_display(message.accepted_at),
            expires=_display(message.expires_at),
            html_body=(
                None if message.html_body is None else Markup(clean_html(message.html_body))
            ),
        )
        return self._page(start_response, request, "200 OK", page)

    def _refused(
        self,
        start_response: StartResponse,
        request: _Request,
        service: Callable[[], PickupService],
        token: str,
        refused: PickupRefused,
    ) -> Iterable[bytes]:
        if refused.reason in (PickupRefused.LOGIN, PickupRefused.REGISTER):
            identity = service().identity(token)
            if refused.reason == PickupRefused.LOGIN:
                return self._login_form(start_response, request, token, identity, None)
            return self._register_form(start_response, request, token, identity, None)
        return self._notice(start_response, request, refused.reason, refused.language)

    # POST.

    def _post(
        self,
        start_response: StartResponse,
        request: _Request,
        service: PickupService,
        token: str,
        action: str,
        form: dict[str, str],
    ) -> Iterable[bytes]:
        if action == "logout":
            if request.session:
                service.logout(request.session)
            request.set_cookies.append(_cookie(SESSION_COOKIE, "", max_age=0))
            return self._see(start_response, request, token)
        if action == "decision":
            choice = form.get("choice")
            # Only an explicit choice counts: a refusal is final and the sender is told.
            if choice in ("accept", "refuse"):
                service.decide(
                    token,
                    request.session,
                    accept=choice == "accept",
                    always_accept=form.get("always") == "yes",
                )
            return self._see(start_response, request, token)
        identity = service.identity(token)
        if request.session:  # a new session replaces the browser's old one
            service.logout(request.session)
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
            return self._login_form(start_response, request, token, identity, refused.reason)
        except RegistrationRefused as refused:
            log.info("pickup registration refused: %s", refused.reason)
            if refused.reason == RegistrationRefused.EXISTS:
                return self._notice(start_response, request, "exists", identity.language)
            return self._register_form(start_response, request, token, identity, refused.reason)
        max_age = int(SESSION_LIFETIME.total_seconds())
        request.set_cookies.append(_cookie(SESSION_COOKIE, session, max_age=max_age))
        return self._see(start_response, request, token)

    # Pages.

    def _login_form(
        self,
        start_response: StartResponse,
        request: _Request,
        token: str,
        identity: LinkIdentity,
        error: str | None,
    ) -> Iterable[bytes]:
        status = {None: "200 OK", LoginRefused.LOCKED: "429 Too Many Requests"}.get(
            error, "401 Unauthorized"
        )
        key = f"login.{error}" if error else None
        return self._form(start_response, request, "login", token, identity, key, status)

    def _register_form(
        self,
        start_response: StartResponse,
        request: _Request,
        token: str,
        identity: LinkIdentity,
        error: str | None,
    ) -> Iterable[bytes]:
        status = "400 Bad Request" if error else "200 OK"
        return self._form(start_response, request, "register", token, identity, error, status)

    def _form(
        self,
        start_response: StartResponse,
        request: _Request,
        name: str,
        token: str,
        identity: LinkIdentity,
        error_key: str | None,
        status: str,
    ) -> Iterable[bytes]:
        """The login or registration page for the link's address, with the error said."""
        language = request.chosen or identity.language
        page = _PAGES[name].render(
            **self._values(request, language, token),
            identity=identity,
            error=TEXTS[language][error_key] if error_key else None,
            min_password=MIN_PASSWORD_LENGTH,
        )
        return self._page(start_response, request, status, page)

    def _notice(
        self,
        start_response: StartResponse,
        request: _Request,
        reason: str,
        language: Language | None,
    ) -> Iterable[bytes]:
        language = (
            request.chosen
            or language
            or _accepted_language(request.environ)
            or self._default_language
        )
        t = TEXTS[language]
        page = _PAGES["notice"].render(
            **self._values(request, language, ""),
            reason=reason,
            heading=t[f"{reason}.title"],
            text=t[f"{reason}.text"],
        )
        return self._page(start_response, request, _STATUS[reason], page)

    def _values(
        self, request: _Request, language: Language, token: str, *, account: str | None = None
    ) -> dict[str, Any]:
        return {
            "language": language.value,
            "t": TEXTS[language],
            "css": Markup(_CSS),
            "languages": LANGUAGE_NAMES,
            # Absolute: a form page is also shown at <link>/login after a wrong password.
            "link": f"{self.path}{token}" if token else "",
            "csrf": request.csrf,
            "account": account,
        }

    def _page(
        self, start_response: StartResponse, request: _Request, status: str, page: str
    ) -> Iterable[bytes]:
        cookies = [("Set-Cookie", cookie) for cookie in request.set_cookies]
        return _respond(start_response, status, HTML, page.encode("utf-8"), cookies)

    def _see(self, start_response: StartResponse, request: _Request, token: str) -> Iterable[bytes]:
        """After a form: back to the link's page (303, so a reload does not post again)."""
        headers = [("Location", f"{self.path}{token}")]
        headers += [("Set-Cookie", cookie) for cookie in request.set_cookies]
        return _respond(start_response, "303 See Other", HTML, b"", headers)


def _language_of(service: Callable[[], PickupService], token: str) -> Language | None:
    """The language of a genuine link's message, for a page about a refused form."""
    try:
        return service().identity(token).language
    except Exception:  # any link, any state: the page falls back to the reader's
        return None


def _session_address(service: PickupService, request: _Request) -> str | None:
    return service.session_address(request.session) if request.session else None


def _form(environ: dict[str, Any]) -> dict[str, str] | None:
    """A small url-encoded form; None for anything else."""
    content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if content_type != "application/x-www-form-urlencoded" or not 0 < length <= MAX_FORM_BYTES:
        return None
    body = environ["wsgi.input"].read(length)
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return None
    return {name: values[0] for name, values in fields.items()}


def _cookies(header: str) -> dict[str, str]:
    try:
        jar = SimpleCookie(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def _cookie(name: str, value: str, *, max_age: int | None = None) -> str:
    # __Host-: Secure, Path=/ and no Domain, so no other host can set or read it.
    attributes = f"{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax"
    return attributes + (f"; Max-Age={max_age}" if max_age is not None else "")


def _chosen_language(query: str) -> Language | None:
    values = parse_qs(query).get("lang")
    try:
        return Language(values[0]) if values else None
    except ValueError:
        return None


def _accepted_language(environ: dict[str, Any]) -> Language | None:
    """The first of the reader's Accept-Language ranges that the service speaks."""
    for part in environ.get("HTTP_ACCEPT_LANGUAGE", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        try:
            return Language(code)
        except ValueError:
            continue
    return None


def _display(moment: Any) -> str:
    return moment.astimezone(DISPLAY_ZONE).strftime("%d.%m.%Y %H:%M")


def _disposition(filename: str) -> str:
    """attachment, with an ASCII fallback name and the real one (RFC 6266)."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _respond(
    start_response: StartResponse,
    status: str,
    content_type: str,
    body: bytes,
    extra_headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = SECURITY_HEADERS + (extra_headers or [])
    return respond(start_response, status, content_type, body, headers)
