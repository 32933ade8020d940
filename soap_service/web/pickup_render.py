"""The pickup pages as they are written: the templates, the one inline style sheet and the
headers that allow only it, a sender's HTML made harmless, and every kind of answer a
pickup request gets (page, notice, form, download, redirect).
"""

from __future__ import annotations

import base64
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
import nh3
from markupsafe import Markup

from soap_service import crypto
from soap_service.domain.model import Language
from soap_service.domain.pickup import (
    MIN_PASSWORD_LENGTH,
    AttachmentFile,
    DecisionNeeded,
    LinkIdentity,
    LoginRefused,
    OpenedMessage,
    PickupRefused,
)
from soap_service.web.pickup_request import PickupRequest, accepted_language
from soap_service.web.responses import StartResponse, respond
from soap_service.web.texts import TEXTS

HTML = "text/html; charset=utf-8"
# Times as the recipients (Swiss payslips) read clocks.
DISPLAY_ZONE = ZoneInfo("Europe/Zurich")
LANGUAGE_NAMES = (("de", "Deutsch"), ("fr", "Français"), ("it", "Italiano"), ("en", "English"))

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
_STATUS = {
    PickupRefused.UNKNOWN: "404 Not Found",
    PickupRefused.EXPIRED: "410 Gone",
    PickupRefused.WITHDRAWN: "410 Gone",
    PickupRefused.REFUSED: "410 Gone",
    PickupRefused.DELETED: "410 Gone",
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


class PickupAnswer:
    """Writes the answer to one pickup request, with the security headers and the cookies
    the request set. `path` is where the links live (e.g. "/m/")."""

    def __init__(
        self,
        start_response: StartResponse,
        request: PickupRequest,
        *,
        path: str,
        default_language: Language,
    ) -> None:
        self._start_response = start_response
        self._request = request
        self._path = path
        self._default_language = default_language

    # Pages.

    def decision(
        self, token: str, decision: DecisionNeeded, language: Language, account: str | None
    ) -> list[bytes]:
        page = _PAGES["decide"].render(
            **self._values(language, token, account=account),
            decision=decision,
            received=_display(decision.accepted_at),
            expires=_display(decision.expires_at),
        )
        return self._page("200 OK", page)

    def message(
        self, token: str, message: OpenedMessage, language: Language, account: str | None
    ) -> list[bytes]:
        page = _PAGES["message"].render(
            **self._values(language, token, account=account),
            message=message,
            received=_display(message.accepted_at),
            expires=_display(message.expires_at),
            html_body=(
                None if message.html_body is None else Markup(clean_html(message.html_body))
            ),
        )
        return self._page("200 OK", page)

    def login_form(self, token: str, identity: LinkIdentity, error: str | None) -> list[bytes]:
        status = {None: "200 OK", LoginRefused.LOCKED: "429 Too Many Requests"}.get(
            error, "401 Unauthorized"
        )
        key = f"login.{error}" if error else None
        return self._form("login", token, identity, key, status)

    def register_form(self, token: str, identity: LinkIdentity, error: str | None) -> list[bytes]:
        status = "400 Bad Request" if error else "200 OK"
        return self._form("register", token, identity, error, status)

    def notice(self, reason: str, language: Language | None) -> list[bytes]:
        """The page of a refused link, a refused form or a failure, in the first language
        known of: the reader's pick, the message's, the browser's, the service's."""
        request = self._request
        language = (
            request.chosen
            or language
            or accepted_language(request.environ)
            or self._default_language
        )
        t = TEXTS[language]
        page = _PAGES["notice"].render(
            **self._values(language, ""),
            reason=reason,
            heading=t[f"{reason}.title"],
            text=t[f"{reason}.text"],
        )
        return self._page(_STATUS[reason], page)

    # Other answers.

    def download(self, file: AttachmentFile) -> list[bytes]:
        disposition = [("Content-Disposition", _disposition(file.filename))]
        return self._respond("200 OK", "application/octet-stream", file.content, disposition)

    def see(self, token: str) -> list[bytes]:
        """After a form: back to the link's page (303, so a reload does not post again)."""
        headers = [("Location", f"{self._path}{token}")]
        headers += [("Set-Cookie", cookie) for cookie in self._request.set_cookies]
        return self._respond("303 See Other", HTML, b"", headers)

    def not_allowed(self, allowed: str) -> list[bytes]:
        return self._respond("405 Method Not Allowed", HTML, b"", [("Allow", allowed)])

    # Parts.

    def _form(
        self,
        name: str,
        token: str,
        identity: LinkIdentity,
        error_key: str | None,
        status: str,
    ) -> list[bytes]:
        """The login or registration page for the link's address, with the error said."""
        language = self._request.chosen or identity.language
        page = _PAGES[name].render(
            **self._values(language, token),
            identity=identity,
            error=TEXTS[language][error_key] if error_key else None,
            min_password=MIN_PASSWORD_LENGTH,
        )
        return self._page(status, page)

    def _values(
        self, language: Language, token: str, *, account: str | None = None
    ) -> dict[str, Any]:
        return {
            "language": language.value,
            "t": TEXTS[language],
            "css": Markup(_CSS),
            "languages": LANGUAGE_NAMES,
            # Absolute: a form page is also shown at <link>/login after a wrong password.
            "link": f"{self._path}{token}" if token else "",
            "csrf": self._request.csrf,
            "account": account,
        }

    def _page(self, status: str, page: str) -> list[bytes]:
        cookies = [("Set-Cookie", cookie) for cookie in self._request.set_cookies]
        return self._respond(status, HTML, page.encode("utf-8"), cookies)

    def _respond(
        self,
        status: str,
        content_type: str,
        body: bytes,
        extra_headers: list[tuple[str, str]] | None = None,
    ) -> list[bytes]:
        headers = SECURITY_HEADERS + (extra_headers or [])
        return respond(self._start_response, status, content_type, body, headers)


def _display(moment: datetime) -> str:
    return moment.astimezone(DISPLAY_ZONE).strftime("%d.%m.%Y %H:%M")


def _disposition(filename: str) -> str:
    """attachment, with an ASCII fallback name and the real one (RFC 6266)."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
