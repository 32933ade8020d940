"""A person's logbook of the messages they sent from the site (domain/logbook.py).

    GET  /account/sent                           the list: filters, pages
    GET  /account/sent.csv                       the same list as CSV, a row per recipient
    GET  /account/sent/<id>                      one message: each recipient's state, times
    POST /account/sent/<id>/withdraw             CancelMessage
    GET  /account/sent/<id>/receipt/<kind>       a registered message's signed receipt

A team's logbook is the same pages under /account/teams/<team>/ (its members only).
Another person's or team's message, one that does not exist, and a team the person is not
in answer the same 404 page.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, request, url_for
from flask_babel import lazy_gettext
from werkzeug.exceptions import NotFound as PageNotFound
from werkzeug.routing import BaseConverter
from werkzeug.wrappers import Response

from soap_service.domain.journal import MessageFilter
from soap_service.domain.logbook import Logbook, LogbookEntry, Shelf
from soap_service.domain.model import MessageState, MessageType, RecipientState
from soap_service.domain.ports import RecipientAccount
from soap_service.domain.receipts import ReceiptKind
from soap_service.errors import NotFound, ValidationError
from soap_service.web.compose import TYPES
from soap_service.web.context import csrf_matches, current_person, services
from soap_service.web.listing import chosen_filters, csv_download, language_query, period
from soap_service.web.pages import (
    choice_query,
    notice,
    page,
    reader_language,
    see,
)

log = logging.getLogger("soap_service.logbook")

blueprint = Blueprint("logbook", __name__)

# Each recipient's state as the sender reads it.
STATES = {
    RecipientState.QUEUED: lazy_gettext("Waiting"),
    RecipientState.DEFERRED: lazy_gettext("Delayed"),
    RecipientState.SENT: lazy_gettext("Notified"),
    RecipientState.DELIVERED: lazy_gettext("Delivered"),
    RecipientState.OPENED: lazy_gettext("Opened"),
    RecipientState.ACCEPTED: lazy_gettext("Accepted"),
    RecipientState.REFUSED: lazy_gettext("Refused"),
    RecipientState.EXPIRED: lazy_gettext("Expired"),
    RecipientState.FAILED: lazy_gettext("Failed"),
    RecipientState.CANCELLED: lazy_gettext("Withdrawn"),
}
MESSAGE_STATES = {
    MessageState.QUEUED: lazy_gettext("Waiting"),
    MessageState.IN_PROGRESS: lazy_gettext("In progress"),
    MessageState.COMPLETED: lazy_gettext("Completed"),
    MessageState.CANCELLED: lazy_gettext("Withdrawn"),
}
RECEIPTS = {
    ReceiptKind.SUBMISSION: lazy_gettext("Submission receipt"),
    ReceiptKind.PICKUP: lazy_gettext("Pickup receipt"),
    ReceiptKind.REFUSAL: lazy_gettext("Refusal receipt"),
    ReceiptKind.EXPIRY: lazy_gettext("Expiry receipt"),
}
# The recipient state whose receipt each kind is.
_RECEIPT_STATES = {
    RecipientState.ACCEPTED: ReceiptKind.PICKUP,
    RecipientState.REFUSED: ReceiptKind.REFUSAL,
    RecipientState.EXPIRED: ReceiptKind.EXPIRY,
}
_WITHDRAWABLE = frozenset({RecipientState.QUEUED, RecipientState.DEFERRED, RecipientState.SENT})
# The export: a row per recipient.
CSV_COLUMNS = (
    "MessageId",
    "Reference",
    "Type",
    "Subject",
    "AcceptedAt",
    "ExpiresAt",
    "Recipient",
    "State",
    "StateChangedAt",
)


class _MessageIdConverter(BaseConverter):
    # A message id's own shape (a UUID): nothing else reaches a handler.
    regex = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@blueprint.record_once
def _register_converter(state: Any) -> None:
    state.app.url_map.converters["message_id"] = _MessageIdConverter


@blueprint.get("/sent", defaults={"team_id": None})
@blueprint.get("/teams/<int:team_id>/sent")
def sent(team_id: int | None) -> Response:
    person = current_person()
    if person is None:
        return _to_login()
    shelf = _shelf(person, team_id)
    chosen = chosen_filters()
    try:
        where = _filter(chosen)
        found = _service().page(
            shelf, where, words=chosen["words"], cursor=request.args.get("cursor") or None
        )
    except ValidationError:
        return notice("bad-filter", None)
    query = {name: value for name, value in chosen.items() if value}
    return page(
        "logbook",
        reader_language(),
        link=url_for("logbook.sent", team_id=team_id),
        team=shelf.team_name,
        logout=url_for("account.logout"),
        account=person.address,
        chosen_filters=chosen,
        states=[(state.value, label) for state, label in MESSAGE_STATES.items()],
        types=[(kind.value, names[0]) for kind, names in TYPES.items()],
        entries=[_entry_values(entry, team_id) for entry in found.entries],
        next_page=(
            url_for("logbook.sent", team_id=team_id)
            + "?"
            + urlencode({**query, **language_query(), "cursor": found.cursor})
            if found.cursor
            else None
        ),
        export=url_for("logbook.export", team_id=team_id)
        + "?"
        + urlencode({**query, **language_query()}),
    )


@blueprint.get("/sent.csv", defaults={"team_id": None})
@blueprint.get("/teams/<int:team_id>/sent.csv")
def export(team_id: int | None) -> Response:
    person = current_person()
    if person is None:
        return _to_login()
    shelf = _shelf(person, team_id)
    chosen = chosen_filters()
    try:
        where = _filter(chosen)
    except ValidationError:
        return notice("bad-filter", None)
    rows = (
        [
            entry.status.message_id,
            entry.status.reference,
            entry.status.type.value,
            entry.subject,
            entry.status.accepted_at.isoformat(),
            entry.status.expires_at.isoformat(),
            recipient.address,
            recipient.state.value,
            recipient.state_changed_at.isoformat(),
        ]
        for entry in _service().export(shelf, where, words=chosen["words"])
        for recipient in entry.status.recipients
    )
    return csv_download("logbook.csv", CSV_COLUMNS, rows)


@blueprint.get("/sent/<message_id:message_id>", defaults={"team_id": None})
@blueprint.get("/teams/<int:team_id>/sent/<message_id:message_id>")
def message(message_id: str, team_id: int | None) -> Response:
    person = current_person()
    if person is None:
        return _to_login()
    shelf = _shelf(person, team_id)
    entry = _entry(shelf, message_id)
    status = entry.status
    receipts = []
    if status.type is MessageType.REGISTERED:
        submission = _receipt_link(team_id, message_id, "submission")
        receipts.append((RECEIPTS[ReceiptKind.SUBMISSION], submission))
        for recipient in status.recipients:
            kind = _RECEIPT_STATES.get(recipient.state)
            if kind is not None:
                link = _receipt_link(team_id, message_id, kind.value, recipient.address)
                receipts.append((f"{RECEIPTS[kind]}: {recipient.address}", link))
    return page(
        "sent_message",
        reader_language(),
        link=url_for("logbook.message", message_id=message_id, team_id=team_id),
        team=shelf.team_name,
        logout=url_for("account.logout"),
        account=person.address,
        entry=_entry_values(entry, team_id),
        recipients=[
            {
                "address": recipient.address,
                "state": STATES[recipient.state],
                "changed": recipient.state_changed_at,
            }
            for recipient in status.recipients
        ],
        withdrawable=any(r.state in _WITHDRAWABLE for r in status.recipients),
        receipts=receipts,
    )


@blueprint.post("/sent/<message_id:message_id>/withdraw", defaults={"team_id": None})
@blueprint.post("/teams/<int:team_id>/sent/<message_id:message_id>/withdraw")
def withdraw(message_id: str, team_id: int | None) -> Response:
    if not csrf_matches(request.form.to_dict()):
        log.info("withdraw refused: CSRF token missing or wrong")
        return notice("csrf", None)
    person = current_person()
    if person is None:
        return _to_login()
    try:
        _service().withdraw(_shelf(person, team_id), message_id)
    except NotFound:
        raise PageNotFound() from None
    log.info("message withdrawn from the site: %s", message_id)
    link = url_for("logbook.message", message_id=message_id, team_id=team_id)
    return see(link + choice_query())


@blueprint.get("/sent/<message_id:message_id>/receipt/<kind>", defaults={"team_id": None})
@blueprint.get("/teams/<int:team_id>/sent/<message_id:message_id>/receipt/<kind>")
def receipt(message_id: str, kind: str, team_id: int | None) -> Response:
    person = current_person()
    if person is None:
        return _to_login()
    shelf = _shelf(person, team_id)
    try:
        found = _service().receipt(
            shelf, message_id, ReceiptKind(kind), request.args.get("recipient") or None
        )
    except (ValueError, NotFound, ValidationError):
        raise PageNotFound() from None
    return Response(
        found.pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{found.filename}"'},
    )


# Parts.


def _to_login() -> Response:
    return see(url_for("account.login") + choice_query())


def _shelf(person: RecipientAccount, team_id: int | None) -> Shelf:
    """The person's own messages, or a team's they are in; 404 for any other team."""
    try:
        return _service().shelf(person, team_id)
    except NotFound:
        raise PageNotFound() from None


def _entry(shelf: Shelf, message_id: str) -> LogbookEntry:
    try:
        return _service().message(shelf, message_id)
    except NotFound:
        raise PageNotFound() from None


def _entry_values(entry: LogbookEntry, team_id: int | None) -> dict[str, Any]:
    status = entry.status
    link = url_for("logbook.message", message_id=status.message_id, team_id=team_id)
    return {
        "href": link + choice_query(),
        "sender": entry.sender,
        "subject": entry.subject,
        "type": TYPES[status.type][0],
        "state": MESSAGE_STATES[status.state],
        "accepted": status.accepted_at,
        "expires": status.expires_at,
        "recipients": ", ".join(recipient.address for recipient in status.recipients),
        "message_id": status.message_id,
    }


def _filter(chosen: dict[str, str]) -> MessageFilter:
    try:
        state = MessageState(chosen["state"]) if chosen["state"] else None
        kind = MessageType(chosen["type"]) if chosen["type"] else None
        start, end = period(chosen)
    except ValueError:
        raise ValidationError("a filter that cannot be read") from None
    return MessageFilter(state=state, type=kind, accepted_from=start, accepted_before=end)


def _receipt_link(
    team_id: int | None, message_id: str, kind: str, recipient: str | None = None
) -> str:
    link = url_for("logbook.receipt", message_id=message_id, kind=kind, team_id=team_id)
    return link + ("?" + urlencode({"recipient": recipient}) if recipient else "")


def _service() -> Logbook:
    return services().logbook
