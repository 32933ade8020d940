"""SendMessage's insert, the service's hot path, in each driver's own SQL.

It is run on the driver's cursor (`Transactions._driver_transaction`): compiling and
processing Core statements cost more CPU than SQLite spends storing them, and on PostgreSQL
one statement is one round trip instead of six. SQLite gets a few statements in one
transaction, PostgreSQL one statement; both store the same rows in the same order, and a
store test on both backends checks that.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Dialect

from soap_service.domain.ports import NewMessage
from soap_service.errors import InternalError
from soap_service.persistence.dialects import timestamp_format

_MESSAGE_COLUMNS = (
    "id, account_id, reference, type, language, accepted_at, expires_at, key_id, "
    "wrapped_key, fingerprint, sealed_subject, sealed_text_body, sealed_html_body, "
    "content_bytes, report_to"
)
_ACCEPTED = "accepted"
_WAITING = "waiting for delivery"


def _message_values(message: NewMessage, timestamp: Callable[[datetime], Any]) -> tuple[Any, ...]:
    """The messages row, in the order of _MESSAGE_COLUMNS."""
    return (
        message.message_id,
        message.account_id,
        message.reference,
        message.type.value,
        message.language.value,
        timestamp(message.accepted_at),
        timestamp(message.expires_at),
        message.data_key.key_id,
        message.data_key.wrapped,
        message.fingerprint,
        message.sealed_subject,
        message.sealed_text_body,
        message.sealed_html_body,
        message.content_bytes,
        message.report_to,
    )


def _accepted_detail(message: NewMessage) -> str:
    return (
        f"{len(message.recipients)} recipient(s), {len(message.attachments)} attachment(s), "
        f"{message.content_bytes} bytes"
    )


_SQLITE_INSERT_MESSAGE = (
    f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES ("
    + ", ".join("?" for _ in _MESSAGE_COLUMNS.split(","))
    + ") ON CONFLICT (account_id, reference) DO NOTHING RETURNING id"
)
_SQLITE_INSERT_ATTACHMENT = (
    "INSERT INTO attachments (message_id, position, sealed_filename, content_type, size, "
    "sealed_content) VALUES (?, ?, ?, ?, ?, ?)"
)
# A large attachment is written into a zero-filled blob of its size: bound as a parameter,
# SQLite would hold two copies of it (the bound value and the record it builds), 60 MiB
# for a 30 MiB attachment, where the blob is written page by page.
_SQLITE_STREAMED_BYTES = 1024 * 1024
_SQLITE_INSERT_ATTACHMENT_ZEROBLOB = (
    "INSERT INTO attachments (message_id, position, sealed_filename, content_type, size, "
    "sealed_content) VALUES (?, ?, ?, ?, ?, zeroblob(?))"
)
_SQLITE_INSERT_RECIPIENT = (
    "INSERT INTO recipients (message_id, position, address, token_hash, state, attempts, "
    "state_changed_at) VALUES (?, ?, ?, ?, 'queued', 0, ?)"
)
# The journal: the message's acceptance, then each recipient's queueing, in position order.
_SQLITE_INSERT_ACCEPTED_EVENT = (
    f"INSERT INTO events (message_id, recipient_id, at, kind, detail) "
    f"VALUES (?, NULL, ?, '{_ACCEPTED}', ?)"
)
_SQLITE_INSERT_QUEUED_EVENTS = f"""
INSERT INTO events (message_id, recipient_id, at, kind, detail)
SELECT message_id, id, state_changed_at, 'queued', '{_WAITING}'
FROM recipients WHERE message_id = ? ORDER BY position
"""


@dataclass(frozen=True)
class SqliteInsert:
    """SendMessage's rows for SQLite, built before the write lock is taken."""

    message: tuple[Any, ...]
    attachments: list[tuple[Any, ...]]
    recipients: list[tuple[Any, ...]]
    accepted_event: tuple[Any, ...]
    message_id: str


def sqlite_insert_steps(message: NewMessage, dialect: Dialect) -> SqliteInsert:
    values = _message_values(message, timestamp_format(dialect))
    message_id, accepted_at = message.message_id, values[5]
    return SqliteInsert(
        message=values,
        attachments=[
            (
                message_id,
                attachment.position,
                attachment.sealed_filename,
                attachment.content_type,
                attachment.size,
                attachment.sealed_content,
            )
            for attachment in message.attachments
        ],
        recipients=[
            (message_id, position, address, token_hash, accepted_at)
            for position, (address, token_hash) in enumerate(
                zip(message.recipients, message.recipient_token_hashes, strict=True), start=1
            )
        ],
        accepted_event=(message_id, accepted_at, _accepted_detail(message)),
        message_id=message_id,
    )


def run_sqlite_insert(cursor: Any, steps: SqliteInsert) -> bool:
    """False if the reference was taken: then nothing is stored."""
    if cursor.execute(_SQLITE_INSERT_MESSAGE, steps.message).fetchone() is None:
        return False
    if any(len(row[5]) > _SQLITE_STREAMED_BYTES for row in steps.attachments):
        for row in steps.attachments:  # one by one, in position order
            _insert_sqlite_attachment(cursor, row)
    elif steps.attachments:
        cursor.executemany(_SQLITE_INSERT_ATTACHMENT, steps.attachments)
    cursor.executemany(_SQLITE_INSERT_RECIPIENT, steps.recipients)
    cursor.execute(_SQLITE_INSERT_ACCEPTED_EVENT, steps.accepted_event)
    cursor.execute(_SQLITE_INSERT_QUEUED_EVENTS, (steps.message_id,))
    return True


def _insert_sqlite_attachment(cursor: Any, row: tuple[Any, ...]) -> None:
    *columns, content = row
    if len(content) <= _SQLITE_STREAMED_BYTES:
        cursor.execute(_SQLITE_INSERT_ATTACHMENT, row)
        return
    cursor.execute(_SQLITE_INSERT_ATTACHMENT_ZEROBLOB, (*columns, len(content)))
    with cursor.connection.blobopen("attachments", "sealed_content", cursor.lastrowid) as blob:
        blob.write(content)


# One statement: data-modifying CTEs insert the message, then (only if it was new) its
# attachments, recipients and journal; foreign keys are checked at its end. Attachments come
# as rows of scalar parameters, recipients as two texts split in SQL: psycopg dumps array
# parameters in Python, which cost more than the rest of the client's side of the statement
# (0.1 ms a message); its scalar dumpers are C. Bytes go in binary (%b): in text they would
# be hex-escaped, 30 MB becoming 60. One statement per number of attachments (0 to 20),
# each prepared once per connection.
_RECIPIENT_SEPARATOR = "\n"  # a valid address never holds a line break


@functools.cache
def postgresql_insert_statement(attachments: int) -> bytes:
    rows = ", ".join(
        f"({position}, %b::bytea, %s::text, %s::bigint, %b::bytea)"
        for position in range(1, attachments + 1)
    )
    insert_attachments = f"""
, new_attachments AS (
    INSERT INTO attachments
        (message_id, position, sealed_filename, content_type, size, sealed_content)
    SELECT new_message.id, a.position, a.sealed_filename, a.content_type, a.size,
           a.sealed_content
    FROM new_message, (VALUES {rows})
         AS a(position, sealed_filename, content_type, size, sealed_content)
)"""
    return f"""
WITH new_message AS (
    INSERT INTO messages ({_MESSAGE_COLUMNS})
    VALUES ({", ".join("%s" for _ in _MESSAGE_COLUMNS.split(","))})
    ON CONFLICT (account_id, reference) DO NOTHING
    RETURNING id, accepted_at
){insert_attachments if attachments else ""}, new_recipients AS (
    INSERT INTO recipients
        (message_id, position, address, token_hash, state, attempts, state_changed_at)
    SELECT new_message.id, r.position, r.address, decode(r.token_hash, 'hex'), 'queued', 0,
           new_message.accepted_at
    FROM new_message,
         unnest(string_to_array(%s, E'\\n'), string_to_array(%s, ','))
         WITH ORDINALITY AS r(address, token_hash, position)
    RETURNING id, position
)
INSERT INTO events (message_id, recipient_id, at, kind, detail)
SELECT message_id, recipient_id, at, kind, detail FROM (
    SELECT new_message.id AS message_id, NULL::bigint AS recipient_id,
           new_message.accepted_at AS at, '{_ACCEPTED}' AS kind, %s AS detail, 0 AS n
    FROM new_message
    UNION ALL
    SELECT new_message.id, new_recipients.id, new_message.accepted_at, 'queued',
           '{_WAITING}', new_recipients.position
    FROM new_message, new_recipients
) AS journal ORDER BY n
RETURNING message_id
""".encode()


def postgresql_insert_parameters(message: NewMessage, dialect: Dialect) -> tuple[Any, ...]:
    """In the order of the statement's placeholders. Attachments are numbered 1, 2 ...
    in order (SealedAttachment.position), as the statement numbers its rows."""
    if any(_RECIPIENT_SEPARATOR in address for address in message.recipients):
        raise InternalError("a recipient address holds a line break")  # validation refuses it
    attachments: list[Any] = []
    for attachment in message.attachments:
        attachments += (
            attachment.sealed_filename,
            attachment.content_type,
            attachment.size,
            attachment.sealed_content,
        )
    return (
        *_message_values(message, timestamp_format(dialect)),
        *attachments,
        _RECIPIENT_SEPARATOR.join(message.recipients),
        ",".join(token.hex() for token in message.recipient_token_hashes),
        _accepted_detail(message),
    )
