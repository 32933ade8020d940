"""What a pickup request carries, read once before any handler runs: its cookies (the
session and the CSRF secret), its small url-encoded form, and the language its reader
picked or prefers; and how the pickup pages' cookies are written.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from soap_service import crypto
from soap_service.domain.model import Language

SESSION_COOKIE = "__Host-pickup-session"
CSRF_COOKIE = "__Host-pickup-csrf"
MAX_FORM_BYTES = 8192


class PickupRequest:
    """What a pickup request carries, read once."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.chosen = _chosen_language(environ.get("QUERY_STRING", ""))
        self.cookies = _cookies(environ.get("HTTP_COOKIE", ""))
        self.session = self.cookies.get(SESSION_COOKIE)
        # A new CSRF secret for a browser that has none; sent along with the page.
        self.csrf = self.cookies.get(CSRF_COOKIE) or crypto.new_secret_token()
        self.set_cookies: list[str] = []
        if CSRF_COOKIE not in self.cookies:
            self.set_cookies.append(cookie(CSRF_COOKIE, self.csrf))

    def csrf_matches(self, form: dict[str, str]) -> bool:
        """Double submit: the form's CSRF token is the one the browser's cookie holds."""
        expected = self.cookies.get(CSRF_COOKIE) or ""
        given = form.get("csrf", "")
        return len(expected) >= 32 and crypto.constant_time_equal(given, expected)


def read_form(environ: dict[str, Any]) -> dict[str, str] | None:
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


def cookie(name: str, value: str, *, max_age: int | None = None) -> str:
    # __Host-: Secure, Path=/ and no Domain, so no other host can set or read it.
    attributes = f"{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax"
    return attributes + (f"; Max-Age={max_age}" if max_age is not None else "")


def accepted_language(environ: dict[str, Any]) -> Language | None:
    """The first of the reader's Accept-Language ranges that the service speaks."""
    for part in environ.get("HTTP_ACCEPT_LANGUAGE", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        try:
            return Language(code)
        except ValueError:
            continue
    return None


def _cookies(header: str) -> dict[str, str]:
    try:
        jar = SimpleCookie(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def _chosen_language(query: str) -> Language | None:
    values = parse_qs(query).get("lang")
    try:
        return Language(values[0]) if values else None
    except ValueError:
        return None
