"""GetStatusChanges and ListMessages through zeep against real processes: a gunicorn
server, a delivery worker and an SMTP sink, on SQLite and on PostgreSQL. A payroll
program polls the journal while the worker delivers and the server is killed under it,
and sees each change exactly once; cursors that were altered or belong to another
account are refused with a fault."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import zeep
from sqlalchemy import create_engine, select

from soap_service.persistence.tables import EventRow, MessageRow, RecipientRow
from tests.e2e.stack import Stack, wait_until
from tests.smtp_sink import SmtpSink

pytestmark = pytest.mark.e2e

STATES = ("queued", "deferred", "sent", "delivered", "opened", "accepted", "refused",
          "expired", "failed", "cancelled")  # fmt: skip


def fault_code(error: zeep.exceptions.Fault) -> str:
    return str(error.code).split(":", 1)[-1]


def batch(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        {
            "Reference": f"{prefix}-{number:03d}",
            "Type": "confidential",
            "Recipients": {
                "Recipient": [
                    {"Address": f"p{number}@example.ch"},
                    {"Address": f"hr{number}@example.ch"},
                ]
            },
            "Subject": "Payslip",
            "TextBody": "Attached.",
        }
        for number in range(1, count + 1)
    ]


def journal_of(stack: Stack, prefix: str) -> list[tuple[str, str, str]]:
    """(reference, address, state) of every recipient state change in the database for
    messages whose reference starts with `prefix`, in event id order."""
    engine = create_engine(stack.service.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(MessageRow.reference, RecipientRow.address, EventRow.kind)
                .join(RecipientRow, RecipientRow.id == EventRow.recipient_id)
                .join(MessageRow, MessageRow.id == EventRow.message_id)
                .where(MessageRow.reference.startswith(prefix), EventRow.kind.in_(STATES))
                .order_by(EventRow.id)
            ).all()
    finally:
        engine.dispose()
    return [tuple(row) for row in rows]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_polling_sees_each_change_once_across_a_server_crash(
    backend: str,
    make_stack: Callable[[str], Stack],
    start_sink: Callable[..., SmtpSink],
) -> None:
    stack = make_stack(backend)
    run = f"run-{uuid.uuid4().hex[:6]}"
    # Another account's messages are in the same journal, never in this one's changes.
    other_user, other_password = stack.service.add_account()
    other = stack.service.client(other_user, other_password)
    other.service.SendMessages(Message=batch("other", 3))

    results = stack.client.service.SendMessages(Message=batch(run, 20))
    assert all(result.Status is not None for result in results)
    stack.start_worker(start_sink(), "worker")

    seen: list[tuple[str, str, str]] = []
    cursor = None
    polls = 0

    def poll() -> bool:
        nonlocal cursor, polls
        page = stack.client.service.GetStatusChanges(Cursor=cursor, PageSize=7)
        seen.extend((c.Reference, c.RecipientAddress, c.State) for c in page.Change)
        cursor, polls = page.NextCursor, polls + 1
        if polls == 3:  # mid-run: the server dies without a goodbye, then comes back
            stack.service.kill()
            stack.service.start()
            stack._client = None  # a new client: zeep's kept connection died with it
        sent = {(ref, address) for ref, address, state in seen if state == "sent"}
        return len(sent) == 40 and not page.HasMore

    wait_until(poll, "every recipient sent, seen through GetStatusChanges", timeout=120)
    assert polls > 3
    # Exactly the journal's changes, each once, in its order; none of the other account.
    assert seen == journal_of(stack, run)
    assert len(seen) == len(set(seen)) == 80
    assert not any(ref.startswith("other") for ref, _, _ in seen)
    # Polled again with the last cursor: nothing new.
    again = stack.client.service.GetStatusChanges(Cursor=cursor)
    assert again.Change == [] and again.HasMore is False
    assert again.NextCursor == cursor


def test_cursors_and_page_sizes_that_are_refused(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack("sqlite")
    stack.client.service.SendMessages(Message=batch("mine", 2))
    other_user, other_password = stack.service.add_account()
    other = stack.service.client(other_user, other_password)
    cursor = stack.client.service.GetStatusChanges(PageSize=1).NextCursor
    listing = stack.client.service.ListMessages(PageSize=1).NextCursor
    tampered = cursor[:-3] + ("A" if cursor[-3] != "A" else "B") + cursor[-2:]

    def refused(call: Callable[[], Any]) -> tuple[str, str]:
        with pytest.raises(zeep.exceptions.Fault) as caught:
            call()
        return fault_code(caught.value), caught.value.message

    not_ours = (
        "Client.ValidationError",
        "Cursor: not a cursor this service gave to this account for this call; "
        "start again without one",
    )
    assert refused(lambda: other.service.GetStatusChanges(Cursor=cursor)) == not_ours
    assert refused(lambda: stack.client.service.GetStatusChanges(Cursor=tampered)) == not_ours
    assert refused(lambda: stack.client.service.GetStatusChanges(Cursor=listing)) == not_ours
    assert refused(lambda: other.service.ListMessages(Cursor=listing)) == not_ours
    assert refused(lambda: stack.client.service.ListMessages(Cursor=cursor)) == not_ours
    for size in (0, 1001):
        assert refused(lambda size=size: stack.client.service.GetStatusChanges(PageSize=size)) == (
            "Client.ValidationError",
            "PageSize: must be 1 to 1000",
        )
    for size in (0, 501):
        assert refused(lambda size=size: stack.client.service.ListMessages(PageSize=size)) == (
            "Client.ValidationError",
            "PageSize: must be 1 to 500",
        )
    assert refused(lambda: stack.client.service.ListMessages(State="lost")) == (
        "Client.ValidationError",
        "ListMessages/State: the value must be one of queued, in_progress, completed, cancelled",
    )
    # The other account's own view holds none of this account's messages (zeep reads the
    # empty list as None).
    assert other.service.ListMessages() is None
    assert other.service.GetStatusChanges().Change == []


def test_list_messages_filters_and_pages(make_stack: Callable[[str], Stack]) -> None:
    stack = make_stack("postgresql")
    service = stack.client.service
    service.SendMessages(Message=batch("2026-11", 3))
    registered = batch("2026-12", 3)
    registered[1]["Type"] = "registered"
    service.SendMessages(Message=registered)
    service.CancelMessage(Reference="2026-12-003")

    def listed(page_size: int = 500, **filters: Any) -> list[str]:
        found: list[str] = []
        cursor = None
        while True:
            page = service.ListMessages(PageSize=page_size, Cursor=cursor, **filters)
            if page is None:  # an empty page: zeep gives None
                return found
            found += [message.Reference for message in page.Message]
            cursor = page.NextCursor
            if cursor is None:
                return found

    everything = listed()
    assert sorted(everything) == sorted(
        [f"2026-11-00{n}" for n in (1, 2, 3)] + [f"2026-12-00{n}" for n in (1, 2, 3)]
    )
    assert listed(page_size=4) == everything
    # Newest first: the December run came after November's.
    assert everything.index("2026-12-001") < everything.index("2026-11-001")
    assert sorted(listed(ReferencePrefix="2026-11")) == [
        "2026-11-001",
        "2026-11-002",
        "2026-11-003",
    ]
    assert listed(Type="registered") == ["2026-12-002"]
    assert listed(State="cancelled") == ["2026-12-003"]
    assert len(listed(State="queued")) == 5
    now = datetime.now(UTC)
    assert listed(AcceptedFrom=now + timedelta(minutes=1)) == []
    assert sorted(listed(AcceptedBefore=now + timedelta(minutes=1))) == sorted(everything)
    page = service.ListMessages(ReferencePrefix="2026-12-00", PageSize=2)
    assert len(page.Message) == 2 and page.NextCursor is not None
    first = page.Message[0]
    assert [r.Address for r in first.Recipients.Recipient] == [
        f"p{first.Reference[-1]}@example.ch",
        f"hr{first.Reference[-1]}@example.ch",
    ]
