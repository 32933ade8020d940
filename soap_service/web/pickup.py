"""The recipient's pickup pages: plain server-rendered HTML, no JavaScript, no remote
content, in the message's language (or the one the reader picks).

    GET <pickup path><token>              the message; the first time makes it `opened`
    GET <pickup path><token>/<position>   one attachment, as a download

The token is a secret: it is never logged. Every answer forbids caching, framing,
referrers and any script; a wrong, expired or withdrawn link gets a plain page.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote
from zoneinfo import ZoneInfo

import jinja2
import nh3
from markupsafe import Markup

from soap_service.domain.model import Language
from soap_service.domain.pickup import OpenedMessage, PickupRefused, PickupService
from soap_service.errors import ServiceError
from soap_service.logs import describe_exception
from soap_service.web.responses import StartResponse, respond
from soap_service.web.texts import TEXTS

log = logging.getLogger("soap_service.pickup")

HTML = "text/html; charset=utf-8"
# Times as the recipients (Swiss payslips) read clocks.
DISPLAY_ZONE = ZoneInfo("Europe/Zurich")
LANGUAGE_NAMES = (("de", "Deutsch"), ("fr", "Français"), ("it", "Italiano"), ("en", "English"))

_FOLDER = Path(__file__).parent / "templates"
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_FOLDER), autoescape=True, undefined=jinja2.StrictUndefined
)
_MESSAGE = _TEMPLATES.get_template("message.html.j2")
_NOTICE = _TEMPLATES.get_template("notice.html.j2")
_CSS = (_FOLDER / "pickup.css").read_text(encoding="utf-8")
# The one style sheet is inline and allowed by its hash: nothing else may style, script,
# load an image or a font, or frame the page.
_CSS_HASH = base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
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
_PATH = re.compile(r"(?P<token>[^/]+)(?:/(?P<position>[1-9][0-9]{0,2}))?")
_STATUS = {
    PickupRefused.UNKNOWN: "404 Not Found",
    PickupRefused.EXPIRED: "410 Gone",
    PickupRefused.WITHDRAWN: "410 Gone",
    PickupRefused.NEEDS_ACCOUNT: "403 Forbidden",
}


def clean_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=_HTML_TAGS,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


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
        if environ.get("REQUEST_METHOD", "GET").upper() != "GET":
            return _respond(
                start_response,
                "405 Method Not Allowed",
                HTML,
                b"",
                [("Allow", "GET")],
            )
        chosen = _chosen_language(environ.get("QUERY_STRING", ""))
        matched = _PATH.fullmatch(environ.get("PATH_INFO", "")[len(self.path) :])
        if matched is None:
            return self._notice(start_response, PickupRefused.UNKNOWN, chosen, environ)
        token, position = matched["token"], matched["position"]
        try:
            if position is None:
                message = service().open(token)
                return self._message(start_response, message, token, chosen)
            file = service().attachment(token, int(position))
        except PickupRefused as refused:
            log.info("pickup refused: %s", refused.reason)
            return self._notice(start_response, refused.reason, chosen or refused.language, environ)
        except ServiceError as exc:  # the database is away
            log.warning("pickup unavailable: %s", exc.message)
            return self._notice(start_response, "unavailable", chosen, environ)
        except Exception as exc:
            log.error("pickup failed: %s", describe_exception(exc))
            return self._notice(start_response, "error", chosen, environ)
        return _respond(
            start_response,
            "200 OK",
            "application/octet-stream",
            file.content,
            [("Content-Disposition", _disposition(file.filename))],
        )

    def _message(
        self,
        start_response: StartResponse,
        message: OpenedMessage,
        token: str,
        chosen: Language | None,
    ) -> Iterable[bytes]:
        language = chosen or message.language
        page = _MESSAGE.render(
            **_page_values(language),
            message=message,
            token=token,
            received=_display(message.accepted_at),
            expires=_display(message.expires_at),
            html_body=(
                None if message.html_body is None else Markup(clean_html(message.html_body))
            ),
        )
        return _respond(start_response, "200 OK", HTML, page.encode("utf-8"))

    def _notice(
        self,
        start_response: StartResponse,
        reason: str,
        language: Language | None,
        environ: dict[str, Any],
    ) -> Iterable[bytes]:
        language = language or _accepted_language(environ) or self._default_language
        t = TEXTS[language]
        page = _NOTICE.render(
            **_page_values(language),
            reason=reason,
            heading=t[f"{reason}.title"],
            text=t[f"{reason}.text"],
        )
        status = _STATUS.get(reason) or (
            "503 Service Unavailable" if reason == "unavailable" else "500 Internal Server Error"
        )
        return _respond(start_response, status, HTML, page.encode("utf-8"))


def _page_values(language: Language) -> dict[str, Any]:
    return {
        "language": language.value,
        "t": TEXTS[language],
        "css": Markup(_CSS),
        "languages": LANGUAGE_NAMES,
    }


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
    return respond(
        start_response, status, content_type, body, SECURITY_HEADERS + (extra_headers or [])
    )
