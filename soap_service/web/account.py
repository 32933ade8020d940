"""A person's pages on the site: log in with the address's account (the one registered on
a pickup page), the inbox of the messages that mailbox received, log out.

    GET  /account           the inbox (or, without a session, the way to log in)
    GET  /account/login     the login form
    POST /account/login     address and password: session
    POST /account/logout

The session is the pickup pages' (one cookie, one account per mailbox): logged in here,
a personal message's link opens without asking again, and the reverse. A wrong password
and an address without an account get the same answer.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from flask import Blueprint, request, url_for
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response

from soap_service.domain.inbox import InboxService
from soap_service.domain.model import MessageType, RecipientState
from soap_service.domain.pickup import SESSION_LIFETIME, LoginRefused, SecondFactorNeeded
from soap_service.domain.ports import InboxFilter
from soap_service.errors import AuthenticationThrottled, ValidationError
from soap_service.web.access import second_factor_page
from soap_service.web.context import (
    SESSION_COOKIE,
    client,
    csrf_matches,
    current_person,
    services,
    set_cookie,
)
from soap_service.web.listing import chosen_filters, csv_download, language_query, period
from soap_service.web.pages import (
    choice_query,
    notice,
    page,
    reader_language,
    see,
)

log = logging.getLogger("soap_service.account")

blueprint = Blueprint("account", __name__)

THROTTLED = "throttled"
LOGIN_ERRORS = {
    LoginRefused.WRONG: (lazy_gettext("The address or the password is wrong."), 401),
    LoginRefused.LOCKED: (
        lazy_gettext("Too many wrong passwords. Try again in 15 minutes."),
        429,
    ),
    THROTTLED: (
        lazy_gettext("Too many wrong passwords from here. Please wait a little and try again."),
        429,
    ),
}
# A recipient's state as the recipient sees it: before opening, every delivery state is new.
STATES = {
    RecipientState.QUEUED: lazy_gettext("New"),
    RecipientState.DEFERRED: lazy_gettext("New"),
    RecipientState.SENT: lazy_gettext("New"),
    RecipientState.DELIVERED: lazy_gettext("New"),
    RecipientState.FAILED: lazy_gettext("New"),
    RecipientState.OPENED: lazy_gettext("Opened"),
    RecipientState.ACCEPTED: lazy_gettext("Accepted"),
    RecipientState.REFUSED: lazy_gettext("Refused"),
    RecipientState.EXPIRED: lazy_gettext("Expired"),
    RecipientState.CANCELLED: lazy_gettext("Withdrawn"),
}
# The inbox's filter by state: the states as the recipient sees them.
STATE_GROUPS = {
    "new": (
        lazy_gettext("New"),
        frozenset(
            {
                RecipientState.QUEUED,
                RecipientState.DEFERRED,
                RecipientState.SENT,
                RecipientState.DELIVERED,
                RecipientState.FAILED,
            }
        ),
    ),
    "opened": (lazy_gettext("Opened"), frozenset({RecipientState.OPENED})),
    "accepted": (lazy_gettext("Accepted"), frozenset({RecipientState.ACCEPTED})),
    "refused": (lazy_gettext("Refused"), frozenset({RecipientState.REFUSED})),
    "expired": (lazy_gettext("Expired"), frozenset({RecipientState.EXPIRED})),
    "withdrawn": (lazy_gettext("Withdrawn"), frozenset({RecipientState.CANCELLED})),
}
RECEIVED_COLUMNS = ("MessageId", "Sender", "Type", "Subject", "ReceivedAt", "State")
TYPES = {
    MessageType.CONFIDENTIAL: lazy_gettext("Confidential"),
    MessageType.PERSONAL: lazy_gettext("Personal"),
    MessageType.REGISTERED: lazy_gettext("Registered"),
}


@blueprint.get("")
def inbox() -> Response:
    current_person()  # the reader's time zone
    chosen = chosen_filters()
    try:
        where = _filter(chosen)
        inbox = _service().inbox(
            request.cookies.get(SESSION_COOKIE),
            where,
            words=chosen["words"],
            cursor=request.args.get("cursor") or None,
        )
    except ValidationError:
        return notice("bad-filter", None)
    if inbox is None:
        return see(url_for("account.login") + choice_query())
    query = {name: value for name, value in chosen.items() if value}
    return page(
        "inbox",
        reader_language(),
        link=url_for("account.inbox"),
        account=inbox.address,
        chosen_filters=chosen,
        states=[(group, STATE_GROUPS[group][0]) for group in STATE_GROUPS],
        types=[(kind.value, label) for kind, label in TYPES.items()],
        entries=[
            {
                "organisation": entry.organisation,
                "subject": entry.subject,
                "type": TYPES[entry.type],
                "state": STATES[entry.state],
                "received": entry.accepted_at,
                "href": url_for("pickup.view", token=entry.token) + choice_query(),
            }
            for entry in inbox.entries
        ],
        next_page=(
            url_for("account.inbox")
            + "?"
            + urlencode({**query, **language_query(), "cursor": inbox.cursor})
            if inbox.cursor
            else None
        ),
        export=url_for("account.export") + "?" + urlencode({**query, **language_query()}),
    )


@blueprint.get("/received.csv")
def export() -> Response:
    chosen = chosen_filters()
    try:
        where = _filter(chosen)
    except ValidationError:
        return notice("bad-filter", None)
    entries = _service().export(request.cookies.get(SESSION_COOKIE), where, words=chosen["words"])
    if entries is None:
        return see(url_for("account.login") + choice_query())
    rows = (
        [
            entry.message_id,
            entry.organisation,
            entry.type.value,
            entry.subject,
            entry.accepted_at.isoformat(),
            entry.state.value,
        ]
        for entry in entries
    )
    return csv_download("received.csv", RECEIVED_COLUMNS, rows)


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Response:
    if request.method == "GET":
        return _login_form("", None)
    form = request.form
    if not csrf_matches(form.to_dict()):
        log.info("account form refused: CSRF token missing or wrong")
        return notice("csrf", None)
    address = form.get("address", "")[:320]
    try:
        session = _service().login(address, form.get("password", ""), client())
    except LoginRefused as refused:
        log.info("account login refused: %s", refused.reason)
        return _login_form(address, refused.reason)
    except AuthenticationThrottled:
        log.info("account login throttled")
        return _login_form(address, THROTTLED)
    except SecondFactorNeeded as needed:  # the code from the app, then the inbox
        return second_factor_page(needed.account_id, url_for("account.inbox"))
    response = see(url_for("account.inbox") + choice_query())
    set_cookie(response, SESSION_COOKIE, session, max_age=int(SESSION_LIFETIME.total_seconds()))
    return response


@blueprint.post("/logout")
def logout() -> Response:
    if not csrf_matches(request.form.to_dict()):
        log.info("account form refused: CSRF token missing or wrong")
        return notice("csrf", None)
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        _service().logout(session)
    response = see(url_for("account.login") + choice_query())
    set_cookie(response, SESSION_COOKIE, "", max_age=0)
    return response


def _filter(chosen: dict[str, str]) -> InboxFilter:
    try:
        states = STATE_GROUPS[chosen["state"]][1] if chosen["state"] else None
        kind = MessageType(chosen["type"]) if chosen["type"] else None
        start, end = period(chosen)
    except (KeyError, ValueError):
        raise ValidationError("a filter that cannot be read") from None
    return InboxFilter(states=states, type=kind, accepted_from=start, accepted_before=end)


def _login_form(address: str, error: str | None) -> Response:
    message, status = LOGIN_ERRORS[error] if error else (None, 200)
    return page(
        "account_login",
        reader_language(),
        status=status,
        link=url_for("account.login"),
        address=address,
        error=message,
    )


def _service() -> InboxService:
    return services().inbox
