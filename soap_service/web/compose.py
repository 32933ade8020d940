"""A person writes and sends a secure message from the site (domain/person_sending.py).

    GET  /account/compose   the form
    POST /account/compose   multipart: type, recipients, subject, text, language, expiry,
                            attachments; the message's page in the logbook, or the form
                            again with what was wrong

The message takes SendMessage's path, with the same limits and attachment policy. The form
carries a Reference made when it was shown: sent twice (a reload, a double click), it is
one message. A small script shows the upload's progress; without it the form posts as any
other.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from flask import Blueprint, current_app, request, url_for
from flask_babel import lazy_gettext
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response

from soap_service.domain.model import (
    AttachmentDraft,
    Language,
    MessageDraft,
    MessageLimits,
    MessageType,
)
from soap_service.domain.person_sending import PersonSending
from soap_service.errors import (
    AttachmentRejected,
    DuplicateReference,
    InvalidAddress,
    MessageTooLarge,
    ValidationError,
)
from soap_service.web.context import csrf_matches, current_person, services
from soap_service.web.pages import (
    UPLOAD_POLICY,
    UPLOAD_SCRIPT,
    choice_query,
    notice,
    page,
    reader_language,
    see,
)

log = logging.getLogger("soap_service.compose")

blueprint = Blueprint("compose", __name__)

# Where the site keeps the message limits (app.config).
LIMITS = "SOAP_SERVICE_MESSAGE_LIMITS"
_REFERENCE = re.compile(r"web-[0-9a-f]{32}")
_SEPARATORS = re.compile(r"[\s,;]+")
# Multipart's own bytes around the fields and files, on top of what they hold.
_FORM_OVERHEAD = 1024 * 1024
TYPES = {
    MessageType.CONFIDENTIAL: (
        lazy_gettext("Confidential"),
        lazy_gettext("Whoever has the link reads it."),
    ),
    MessageType.PERSONAL: (
        lazy_gettext("Personal"),
        lazy_gettext("The recipient logs in to read it."),
    ),
    MessageType.REGISTERED: (
        lazy_gettext("Registered"),
        lazy_gettext("The recipient logs in and accepts it; you get signed receipts."),
    ),
}
ERRORS: dict[type[Exception], Any] = {
    InvalidAddress: lazy_gettext("A recipient's address is not valid."),
    AttachmentRejected: lazy_gettext("An attachment is not allowed."),
    MessageTooLarge: lazy_gettext("The message is too large."),
    DuplicateReference: lazy_gettext("This form was already sent with other content."),
    ValidationError: lazy_gettext("The message is not complete or not valid."),
}


@blueprint.route("/compose", methods=["GET", "POST"])
def compose() -> Response:
    sending = _service()
    person = current_person()
    if person is None:
        return see(url_for("account.login") + choice_query())
    language = reader_language()
    if request.method == "GET":
        return _form(person.address, {"language": language.value}, error=None)
    limits: MessageLimits = current_app.config[LIMITS]
    # The whole form may hold the attachments and both bodies; Flask's default for the
    # site's forms is 8 KiB.
    request.max_content_length = limits.max_attachment_bytes + 2 * limits.max_body_bytes
    request.max_content_length += _FORM_OVERHEAD
    request.max_form_memory_size = limits.max_body_bytes + _FORM_OVERHEAD
    form = request.form.to_dict()
    if not csrf_matches(form):
        log.info("compose form refused: CSRF token missing or wrong")
        return notice("csrf", None)
    files = [file for file in request.files.getlist("attachments") if file.filename]
    try:
        draft = _draft(form, files, language)
        status = sending.send(person, draft)
    except ValidationError as refused:
        log.info("web message refused: %s", refused)
        kind = next(cls for cls in ERRORS if isinstance(refused, cls))
        return _form(
            person.address, form, error=(ERRORS[kind], str(refused)), files_lost=bool(files)
        )
    log.info("web message accepted: %s", status.message_id)
    return see(url_for("logbook.message", message_id=status.message_id) + choice_query())


def _draft(form: dict[str, str], files: list[FileStorage], language: Language) -> MessageDraft:
    try:
        message_type = MessageType(form.get("type", ""))
    except ValueError:
        raise ValidationError("Type: choose confidential, personal or registered") from None
    try:
        expiry_days = int(form.get("expiry", ""))
    except ValueError:
        raise ValidationError("ExpiryDays: a number of days") from None
    try:
        message_language = Language(form.get("language", language.value))
    except ValueError:
        raise ValidationError("Language: de, fr, it or en") from None
    reference = form.get("reference", "")
    if not _REFERENCE.fullmatch(reference):
        reference = _new_reference()
    return MessageDraft(
        reference=reference,
        type=message_type,
        recipients=tuple(
            address for address in _SEPARATORS.split(form.get("recipients", "")) if address
        ),
        subject=form.get("subject", ""),
        text_body=form.get("text", "").replace("\r\n", "\n"),
        attachments=tuple(
            AttachmentDraft(
                filename=file.filename or "",
                content_type=file.mimetype or "application/octet-stream",
                content=file.read(),
            )
            for file in files
        ),
        language=message_language,
        expiry_days=expiry_days,
    )


def _form(
    address: str,
    values: dict[str, str],
    *,
    error: tuple[Any, str] | None,
    files_lost: bool = False,
) -> Response:
    limits: MessageLimits = current_app.config[LIMITS]
    response = page(
        "compose",
        reader_language(),
        status=400 if error else 200,
        link=url_for("compose.compose"),
        logout=url_for("account.logout"),
        account=address,
        error=error[0] if error else None,
        detail=error[1] if error else None,
        files_lost=files_lost,
        types=[(kind.value, *TYPES[kind]) for kind in MessageType],
        languages_offered=[language.value for language in Language],
        expiry_choices=range(limits.min_expiry_days, limits.max_expiry_days + 1),
        max_megabytes=limits.max_attachment_bytes // (1024 * 1024),
        upload_script=UPLOAD_SCRIPT,
        values={
            "type": values.get("type", MessageType.CONFIDENTIAL.value),
            "recipients": values.get("recipients", ""),
            "subject": values.get("subject", ""),
            "text": values.get("text", ""),
            "language": values.get("language", ""),
            "expiry": values.get("expiry", str(limits.default_expiry_days)),
            "reference": values.get("reference") or _new_reference(),
        },
    )
    response.headers["Content-Security-Policy"] = UPLOAD_POLICY
    return response


def _new_reference() -> str:
    return f"web-{uuid.uuid4().hex}"


def _service() -> PersonSending:
    return services().person_sending
