"""SMTP replies: the one place where errors become replies an MTA understands.

Every reply after EHLO carries an RFC 3463 enhanced status code (RFC 2034), aiosmtpd's
own replies included (`with_enhanced_code`). A 4xx reply makes the client try again later
(the database away, a throttled login); a 5xx reply refuses for good, with the reason.
Reply text is ASCII on one line and never quotes message content, only what the sender
named itself (an attachment's file name).
"""

from __future__ import annotations

import logging
import re

from soap_service.domain.model import AttachmentDraft
from soap_service.errors import (
    AttachmentRejected,
    AuthenticationFailed,
    AuthenticationThrottled,
    DuplicateReference,
    InvalidAddress,
    MessageTooLarge,
    Unavailable,
    ValidationError,
)
from soap_service.logs import describe_exception
from soap_service.smtp.mime import BrokenMime, EncryptedMail, UnannouncedEightBit

log = logging.getLogger(__name__)

SENDER_OK = "250 2.1.0 Sender ok"
RECIPIENT_OK = "250 2.1.5 Recipient ok"
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
AUTH_REQUIRED = "530 5.7.0 Authentication required"
AUTH_UNAVAILABLE = (
    "454 4.7.0 Temporary authentication failure: the service's database is unavailable"
)
NO_SENDER = "550 5.1.7 A secure message needs a sender address: failures and receipts go there"
FOREIGN_SENDER = (
    "550 5.7.1 The sender address is not in the domains registered for this client certificate"
)
FOREIGN_AUTHOR = (
    "554 5.7.1 The From address is not in the domains registered for this client certificate"
)
TRY_LATER = "451 4.3.0 Temporary server error; try again later"
DATABASE_AWAY = "451 4.3.0 The service's database is unavailable; try again later"
SHUTTING_DOWN = "421 4.3.2 The service is shutting down; try again later"


def accepted(message_id: str) -> str:
    return f"250 2.0.0 Ok: stored as secure message {message_id}"


def bad_sender(error: InvalidAddress) -> str:
    return _reply("553 5.1.7", f"The sender address is not valid: {error.message}")


def too_many_recipients(limit: int) -> str:
    return f"452 4.5.3 Too many recipients: a secure message has at most {limit}"


def too_large(limit: int) -> str:
    return f"552 5.3.4 Message too big: the limit is {limit} bytes"


def reply_for(error: BaseException, attachments: tuple[AttachmentDraft, ...] = ()) -> str:
    """The reply for an error raised while handling a command or a mail."""
    if isinstance(error, AuthenticationThrottled):
        return _reply("454 4.7.0", error.message)
    if isinstance(error, AuthenticationFailed):
        return AUTH_INVALID
    if isinstance(error, InvalidAddress):
        return _reply("550 5.1.3", error.message)
    if isinstance(error, AttachmentRejected):
        name = attachments[error.position - 1].filename if attachments else None
        what = f'The attachment "{name}"' if name else f"Attachment {error.position}"
        return _reply("554 5.7.1", f"{what} is refused: {error.reason}")
    if isinstance(error, MessageTooLarge):
        return _reply("552 5.3.4", error.message)
    if isinstance(error, DuplicateReference):
        return _reply(
            "554 5.6.0",
            "this Message-ID was already used for a message with different content; "
            "give a new message a new Message-ID",
        )
    if isinstance(error, ValidationError):
        return _reply("554 5.6.0", error.message)
    if isinstance(error, UnannouncedEightBit):
        return _reply("554 5.6.7", str(error))
    if isinstance(error, EncryptedMail):
        return _reply("554 5.6.1", str(error))
    if isinstance(error, BrokenMime):
        return _reply("554 5.6.0", str(error))
    if isinstance(error, Unavailable):
        return DATABASE_AWAY
    log.error("SMTP submission failed: %s", describe_exception(error))
    return TRY_LATER


def _reply(code: str, text: str) -> str:
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text).encode("ascii", "replace").decode("ascii")
    text = text.strip().rstrip(".")
    return f"{code} {text[:400]}"


# aiosmtpd's replies without an enhanced code, by their start: the code to give them.
_AIOSMTPD_REPLIES = (
    ("530 Must issue a STARTTLS", "530 5.7.0 Must issue a STARTTLS command first"),
    ("552 Error: message size exceeds", None),  # replaced by too_large() in protocol.py
    ("552 Error: Too much mail data", None),
    ("554 Command refused due to lack of security", "554 5.7.0 TLS negotiation failed"),
    ("500 Line too long", "500 5.5.2 Line too long: at most 998 characters (RFC 5322)"),
)
# By reply code, for the rest.
_DEFAULT_CODES = {
    "220": "2.0.0",
    "221": "2.0.0",
    "250": "2.0.0",
    "421": "4.3.0",
    "451": "4.3.0",
    "454": "4.7.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "550": "5.0.0",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.0.0",
    "555": "5.5.4",
}
_HAS_CODE = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")


def with_enhanced_code(reply: str, *, size_limit: int) -> str:
    """`reply` with an enhanced status code where aiosmtpd left it out."""
    if _HAS_CODE.match(reply) or not reply[:3].isdigit() or reply[0] not in "245":
        return reply
    for start, replacement in _AIOSMTPD_REPLIES:
        if reply.startswith(start):
            return replacement or too_large(size_limit)
    code, _, text = reply.partition(" ")
    text = text.removeprefix("Error: ")
    enhanced = _DEFAULT_CODES.get(code, f"{code[0]}.0.0")
    return f"{code} {enhanced} {text}".rstrip()
