"""How every web page is written: a template in the page's language, the one inline style
sheet and the headers that allow only it, and the notices that end a request with a
reason (a wrong link, an expired form, the database away, a failure of ours).
"""

from __future__ import annotations

import base64
import logging
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.units import format_unit
from flask import g, render_template, request
from flask_babel import get_locale, lazy_gettext
from markupsafe import Markup
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.wrappers import Response

from soap_service import crypto, display
from soap_service.domain.model import Language
from soap_service.domain.pickup import MessageAbout, PickupRefused, RegistrationRefused
from soap_service.errors import ServiceError
from soap_service.logs import describe_exception
from soap_service.web.i18n import LANGUAGE_NAMES, written_in

log = logging.getLogger("soap_service.pages")

HTML = "text/html; charset=utf-8"
# Times as the recipients (Swiss payslips) read clocks.
DISPLAY_ZONE = display.SWISS_TIME

_TEMPLATES = Path(__file__).parent / "templates"
_CSS = (_TEMPLATES / "pickup.css").read_text(encoding="utf-8")
# The compose page's upload progress (the one script), posting its form here.
UPLOAD_SCRIPT = Markup((_TEMPLATES / "upload.js").read_text(encoding="utf-8"))
# The one style sheet is inline and allowed by its hash: nothing else may style, script,
# load an image or a font, or frame the page; forms post only here.
_CSS_HASH = base64.b64encode(crypto.sha256(_CSS.encode())).decode()
_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# The compose page alone runs a script, the upload's, allowed by its hash, and it may post
# its form here in the background.
_SCRIPT_HASH = base64.b64encode(crypto.sha256(str(UPLOAD_SCRIPT).encode())).decode()
UPLOAD_POLICY = f"{_POLICY}; script-src 'sha256-{_SCRIPT_HASH}'; connect-src 'self'"
SECURITY_HEADERS = {
    "Content-Security-Policy": _POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

# Each notice's heading and text, and the status it is answered with.
NOTICES: dict[str, tuple[Any, Any, int]] = {
    PickupRefused.UNKNOWN: (
        lazy_gettext("Invalid link"),
        lazy_gettext("This link is not valid. Please check that it is complete."),
        404,
    ),
    PickupRefused.EXPIRED: (
        lazy_gettext("Message expired"),
        lazy_gettext(
            "This message is no longer available: its time has run out. Please contact the sender."
        ),
        410,
    ),
    PickupRefused.WITHDRAWN: (
        lazy_gettext("Message withdrawn"),
        lazy_gettext("The sender has withdrawn this message."),
        410,
    ),
    PickupRefused.REFUSED: (
        lazy_gettext("Message refused"),
        lazy_gettext("You refused this message. The sender has been informed."),
        410,
    ),
    PickupRefused.DELETED: (
        lazy_gettext("Content deleted"),
        lazy_gettext(
            "The content of this message was deleted at the end of its retention period. "
            "Ask the sender if you still need it."
        ),
        410,
    ),
    "exists": (
        lazy_gettext("Already registered"),
        lazy_gettext("This address already has an account. Log in with its password."),
        409,
    ),
    "reset-invalid": (
        lazy_gettext("Link no longer valid"),
        lazy_gettext(
            "This link has been used or has expired. You can ask for a new one on the login page."
        ),
        410,
    ),
    "too-large": (
        lazy_gettext("Message too large"),
        lazy_gettext(
            "The attachments are larger than a message may hold. Please send fewer or smaller "
            "files."
        ),
        413,
    ),
    "invitation-other": (
        lazy_gettext("Invitation for another address"),
        lazy_gettext(
            "This invitation is for another e-mail address. Log out and log in with the "
            "invited address."
        ),
        403,
    ),
    "bad-filter": (
        lazy_gettext("Filter not understood"),
        lazy_gettext("The logbook could not read this filter. Please choose it again."),
        400,
    ),
    "csrf": (
        lazy_gettext("Form expired"),
        lazy_gettext("Please reload the page and try again."),
        403,
    ),
    "unavailable": (
        lazy_gettext("Temporarily unavailable"),
        lazy_gettext(
            "The service cannot be reached at the moment. Please try again in a few minutes."
        ),
        503,
    ),
    "error": (
        lazy_gettext("Error"),
        lazy_gettext("Something went wrong. Please try again later."),
        500,
    ),
}


# What is wrong with a new password (or the consent that goes with it), on every form that
# sets one.
REGISTRATION_ERRORS = {
    RegistrationRefused.PASSWORD_SHORT: lazy_gettext("The password needs at least 10 characters."),
    RegistrationRefused.PASSWORD_LONG: lazy_gettext(
        "The password may have at most 200 characters."
    ),
    RegistrationRefused.PASSWORDS_DIFFER: lazy_gettext("The two passwords differ."),
    RegistrationRefused.NO_CONSENT: lazy_gettext("Please give your consent to continue."),
}


def page(name: str, language: Language, *, status: int = 200, **values: Any) -> Response:
    """The template `name`.html.j2 written in `language`."""
    with written_in(language):
        body = render_template(
            f"{name}.html.j2",
            language=language.value,
            css=Markup(_CSS),
            languages=[(code.value, label) for code, label in LANGUAGE_NAMES],
            csrf=g.csrf,
            # The reader's pick of language, kept by the forms it posts (?lang=fr).
            chosen=choice_query(),
            # The logout form posts to the page's own link + /logout unless it says where.
            **{"link": "", "account": None, "logout": f"{values.get('link', '')}/logout", **values},
        )
    return Response(body, status=status, content_type=HTML)


def notice(
    reason: str, language: Language | None, *, about: MessageAbout | None = None
) -> Response:
    """The page of a refused link, a refused form or a failure, in the first language known
    of: the reader's pick, the message's, the browser's, the service's. A link to a message
    that ended (withdrawn, refused, expired, deleted) says which message it was."""
    heading, text, status = NOTICES[reason]
    language = chosen_language() or language or browser_language()
    with written_in(language):
        heading, text = str(heading), str(text)
    return page(
        "notice", language, status=status, reason=reason, heading=heading, text=text, about=about
    )


def failed(error: Exception) -> Response:
    """The one place where an error becomes a page, in the language of the page it happened
    on if known (`g.language`). A ServiceError means the database is away (503, try
    later); anything else is a failure of ours (500; the log names its type and place,
    not its message, which may quote a link)."""
    language: Language | None = g.get("language")
    if isinstance(error, MethodNotAllowed):
        methods = error.valid_methods or ()
        allowed = ", ".join(method for method in methods if method not in ("HEAD", "OPTIONS"))
        return Response(b"", status=405, content_type=HTML, headers={"Allow": allowed})
    if isinstance(error, NotFound):
        return notice(PickupRefused.UNKNOWN, language)
    if isinstance(error, RequestEntityTooLarge):  # more than a message may hold
        log.info("page refused: %s", error.name)
        return notice("too-large", language)
    if isinstance(error, HTTPException):  # a form too large or that cannot be read
        log.info("page refused: %s", error.name)
        return notice("csrf" if request.method == "POST" else PickupRefused.UNKNOWN, language)
    if isinstance(error, ServiceError):
        log.warning("page unavailable: %s", error.message)
        return notice("unavailable", language)
    log.error("page failed: %s", describe_exception(error))
    return notice("error", language)


def see(location: str) -> Response:
    """After a form: back to a page (303, so a reload does not post again)."""
    return Response(b"", status=303, content_type=HTML, headers={"Location": location})


def chosen_language() -> Language | None:
    """The language the reader picked with ?lang=."""
    try:
        return Language(request.args.get("lang", ""))
    except ValueError:
        return None


def choice_query() -> str:
    """The query "?lang=xx" if the reader picked a language, for the forms that keep it."""
    chosen = chosen_language()
    return f"?lang={chosen.value}" if chosen else ""


def reader_language() -> Language:
    """A person's page's language: the reader's pick, else the browser's; kept for the page
    of an error that may follow."""
    language = chosen_language() or browser_language()
    g.language = language
    return language


def browser_language() -> Language:
    """The best of the browser's Accept-Language that the service speaks, or the default."""
    for value, _ in request.accept_languages:  # best first; "fr-CH" is French
        try:
            return Language(value.split("-")[0].lower())
        except ValueError:
            continue
    default: Language = g.default_language
    return default


def file_size(size: int) -> str:
    """A size as the page's language writes it: "57 Byte", "48,8 ko", "1.5 MB"."""
    if size < 1000:
        unit, value = "digital-byte", float(size)
    elif size < 1000**2:
        unit, value = "digital-kilobyte", size / 1000
    else:
        unit, value = "digital-megabyte", size / 1000**2
    written: str = format_unit(value, unit, length="short", format="#,##0.#", locale=get_locale())
    return written


def reader_zone() -> ZoneInfo:
    """The zone the reader chose in their settings (web/context.current_person), else Swiss
    time."""
    zone: ZoneInfo = g.get("zone") or DISPLAY_ZONE
    return zone


def display_time(moment: datetime) -> str:
    """A moment in the page's language and the reader's time zone (display.py). A template
    filter: only while a page is rendered is its language the locale."""
    return display.display_time(moment, str(get_locale()), reader_zone())
