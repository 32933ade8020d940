"""What a page request carries besides its URL and form: its domain services (opened on
first use, closed by the site when the request ends), its CSRF secret, and the cookies
the pages set."""

from __future__ import annotations

from typing import Protocol
from zoneinfo import ZoneInfo

from flask import current_app, g, request
from werkzeug.wrappers import Response

from soap_service import crypto
from soap_service.domain.inbox import InboxService
from soap_service.domain.logbook import Logbook
from soap_service.domain.person_accounts import PersonAccounts
from soap_service.domain.person_sending import PersonSending
from soap_service.domain.pickup import PickupService
from soap_service.domain.ports import RecipientAccount
from soap_service.domain.second_factor import SecondFactor
from soap_service.domain.teams import Teams

CSRF_COOKIE = "__Host-pickup-csrf"
# A person's session, on the pickup pages and the site alike (one account per mailbox).
SESSION_COOKIE = "__Host-pickup-session"
# Where the site keeps how to open a request's domain services (app.extensions).
OPEN_SCOPE = "soap_service.open_scope"
# The client's address as app.py found it (behind a trusted proxy, the forwarded one).
CLIENT_ADDRESS = "soap_service.client_address"


class PageScope(Protocol):
    """One request's domain services on one database connection (container.RequestScope)."""

    @property
    def pickup(self) -> PickupService: ...

    @property
    def inbox(self) -> InboxService: ...

    @property
    def person_accounts(self) -> PersonAccounts: ...

    @property
    def person_sending(self) -> PersonSending: ...

    @property
    def logbook(self) -> Logbook: ...

    @property
    def teams(self) -> Teams: ...

    @property
    def second_factor(self) -> SecondFactor: ...

    def close(self) -> None: ...


def services() -> PageScope:
    """This request's domain services, opened on first use."""
    if "scope" not in g:
        g.scope = current_app.extensions[OPEN_SCOPE]()
    scope: PageScope = g.scope
    return scope


def current_person() -> RecipientAccount | None:
    """The person logged in with this request's session (looked up once a request); their
    time zone becomes the pages' (pages.reader_zone)."""
    if "person" not in g:
        person = services().person_sending.person(request.cookies.get(SESSION_COOKIE))
        g.person = person
        if person is not None and person.time_zone:
            g.zone = ZoneInfo(person.time_zone)
    found: RecipientAccount | None = g.person
    return found


def client() -> str | None:
    """The client's address, for throttling: from app.py, which knows the trusted proxies."""
    address: str | None = request.environ.get(CLIENT_ADDRESS)
    return address


def csrf_matches(form: dict[str, str]) -> bool:
    """Double submit: the form's CSRF token is the one the browser's cookie holds."""
    expected = g.csrf_cookie or ""
    return len(expected) >= 32 and crypto.constant_time_equal(form.get("csrf", ""), expected)


def set_cookie(response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
    # __Host-: Secure, Path=/ and no Domain, so no other host can set or read it.
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="Lax"
    )
