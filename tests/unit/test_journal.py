"""The journal API's domain and queries on a real database, SQLite and PostgreSQL:
GetStatusChanges' cursor (each change once, in order, across commits that land out of
order) and ListMessages' filters and pages; the cursors refused when altered or foreign."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, text

from soap_service import crypto
from soap_service.domain.journal import Journal, MessageFilter, StatusChange
from soap_service.domain.messages import MessageService
from soap_service.domain.model import (
    Account,
    Language,
    MessageDraft,
    MessageLimits,
    MessageState,
    MessageType,
    RecipientState,
)
from soap_service.domain.ports import NewAccount
from soap_service.errors import ValidationError
from soap_service.persistence.database import Database
from soap_service.persistence.store import SqlStore
from tests.conftest import BACKENDS, PostgresDatabases, database_url_for

START = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@dataclass
class World:
    database: Database
    keyring_path: Path
    keyring: crypto.Keyring
    store: SqlStore
    clock: list[datetime]
    alice: Account
    bob: Account

    def journal(self) -> Journal:
        return Journal(store=self.store, keyring=self.keyring)

    def messages(self) -> MessageService:
        return MessageService(
            store=self.store,
            keyring=self.keyring,
            limits=MessageLimits(),
            default_language=Language.DE,
            now=lambda: self.clock[0],
        )

    def send(self, account: Account, reference: str, *recipients: str, **changes: object) -> str:
        self.clock[0] += timedelta(seconds=1)
        draft = MessageDraft(
            reference=reference,
            type=changes.pop("type", MessageType.CONFIDENTIAL),  # type: ignore[arg-type]
            recipients=recipients or (f"{reference}@example.ch",),
            subject="Payslip",
            text_body="Attached.",
        )
        return self.messages().send(account, draft).message_id

    def all_changes(self, account: Account, page_size: int = 1000) -> list[StatusChange]:
        changes: list[StatusChange] = []
        cursor = None
        while True:
            page = self.journal().status_changes(account, cursor=cursor, page_size=page_size)
            changes += page.changes
            cursor = page.cursor
            if not page.more:
                return changes


@pytest.fixture(scope="module", params=BACKENDS)
def database(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres: PostgresDatabases,
) -> Iterator[Database]:
    folder = tmp_path_factory.mktemp(f"journal-{request.param}")
    database = Database(database_url_for(request.param, folder, postgres))
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def world(database: Database, tmp_path: Path) -> Iterator[World]:
    store = database.store()
    suffix = uuid.uuid4().hex[:8]
    alice, bob = (
        store.add_account(
            NewAccount(
                username=f"{name}-{suffix}",
                organisation=name,
                password_hash="unused",
                digest_secret=None,
                created_at=START,
            )
        )
        for name in ("alice", "bob")
    )
    keyring_path = tmp_path / "keyring.json"
    yield World(
        database=database,
        keyring_path=keyring_path,
        keyring=crypto.Keyring.load_or_create(keyring_path),
        store=store,
        clock=[START],
        alice=alice,
        bob=bob,
    )
    store.close()


def summary(changes: list[StatusChange]) -> list[tuple[str, str, str]]:
    return [(c.reference, c.recipient, c.state.value) for c in changes]


# GetStatusChanges.


def test_every_change_once_in_order_in_pages(world: World) -> None:
    world.send(world.alice, "r1", "a@example.ch", "b@example.ch")
    world.send(world.bob, "theirs")
    second = world.send(world.alice, "r2")
    world.messages().cancel(world.alice, message_id=second)

    whole = world.all_changes(world.alice)
    assert summary(whole) == [
        ("r1", "a@example.ch", "queued"),
        ("r1", "b@example.ch", "queued"),
        ("r2", "r2@example.ch", "queued"),
        ("r2", "r2@example.ch", "cancelled"),
    ]
    assert whole[3].detail == "withdrawn by the sender"
    assert whole[3].message_id == second
    # In pages of one, the same changes: each once.
    assert world.all_changes(world.alice, page_size=1) == whole


def test_a_page_looks_at_a_bounded_number_of_events(world: World) -> None:
    """Another account's run between this account's changes: a page looks at twice its
    size of events only, so it may come back short or empty, saying there is more, with
    a cursor past what it looked at; following it finds every change."""
    world.send(world.alice, "before")
    for number in range(6):  # 12 events: each message's acceptance and its queueing
        world.send(world.bob, f"theirs-{number}")
    world.send(world.alice, "after")

    pages = []
    cursor = None
    while True:
        page = world.journal().status_changes(world.alice, cursor=cursor, page_size=1)
        pages.append([c.reference for c in page.changes])
        cursor = page.cursor
        if not page.more:
            break
    assert [ref for page in pages for ref in page] == ["before", "after"]
    assert [] in pages  # pages that looked only at the other account's events
    assert len(pages) >= 8  # 16 events, 2 a page


def test_polling_with_the_cursor_shows_only_what_is_new(world: World) -> None:
    world.send(world.alice, "first")
    page = world.journal().status_changes(world.alice, cursor=None, page_size=None)
    assert summary(list(page.changes)) == [("first", "first@example.ch", "queued")]
    assert not page.more

    empty = world.journal().status_changes(world.alice, cursor=page.cursor, page_size=None)
    assert empty.changes == () and not empty.more

    world.send(world.alice, "second")
    # A new Journal (a restarted service) takes the cursor as it was given.
    later = world.journal().status_changes(world.alice, cursor=empty.cursor, page_size=None)
    assert summary(list(later.changes)) == [("second", "second@example.ch", "queued")]


def test_a_cursor_signed_before_a_key_rotation_still_works(world: World) -> None:
    world.send(world.alice, "before-rotation")
    cursor = world.journal().status_changes(world.alice, cursor=None, page_size=None).cursor
    crypto.Keyring.rotate(world.keyring_path)
    world.keyring = crypto.Keyring.load(world.keyring_path)
    world.send(world.alice, "after-rotation")
    page = world.journal().status_changes(world.alice, cursor=cursor, page_size=None)
    assert [c.reference for c in page.changes] == ["after-rotation"]


def altered(cursor: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[12] ^= 1  # a bit of the position
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize("operation", ["status_changes", "list_messages"])
def test_altered_foreign_and_made_up_cursors_are_refused(world: World, operation: str) -> None:
    world.send(world.alice, "x1")
    world.send(world.alice, "x2")
    journal = world.journal()

    def call(account: Account, cursor: str | None) -> str | None:
        if operation == "status_changes":
            return journal.status_changes(account, cursor=cursor, page_size=1).cursor
        return journal.list_messages(
            account, where=MessageFilter(), cursor=cursor, page_size=1
        ).cursor

    cursor = call(world.alice, None)
    assert cursor is not None
    call(world.alice, cursor)  # genuine: fine
    other = (
        journal.list_messages(world.alice, where=MessageFilter(), cursor=None, page_size=1).cursor
        if operation == "status_changes"
        else journal.status_changes(world.alice, cursor=None, page_size=1).cursor
    )
    for bad in (altered(cursor), cursor[:-2], "", "not a cursor", "A" * 5000, other):
        with pytest.raises(ValidationError, match=r"^Cursor: not a cursor"):
            call(world.alice, bad)
    with pytest.raises(ValidationError, match=r"^Cursor: not a cursor"):
        call(world.bob, cursor)  # another account's: refused, never its data


def test_page_sizes_out_of_range_are_refused(world: World) -> None:
    journal = world.journal()
    for size in (0, -1, 1001):
        with pytest.raises(ValidationError, match="PageSize: must be 1 to 1000"):
            journal.status_changes(world.alice, cursor=None, page_size=size)
    for size in (0, 501):
        with pytest.raises(ValidationError, match="PageSize: must be 1 to 500"):
            journal.list_messages(world.alice, where=MessageFilter(), cursor=None, page_size=size)
    journal.status_changes(world.alice, cursor=None, page_size=1000)
    journal.list_messages(world.alice, where=MessageFilter(), cursor=None, page_size=500)


def test_a_change_committed_after_a_later_one_is_not_skipped(world: World) -> None:
    """Two transactions journal a change each; the one that drew the lower event id
    commits last. A poll between the commits must not move the cursor past its change."""
    if world.database.is_sqlite:
        pytest.skip("SQLite has one writer at a time: its ids are in commit order")
    world.send(world.alice, "slow", "slow@example.ch")
    world.send(world.alice, "fast", "fast@example.ch")
    cursor = world.journal().status_changes(world.alice, cursor=None, page_size=None).cursor
    journal_sql = text(
        "INSERT INTO events (message_id, recipient_id, at, kind, detail) "
        "SELECT message_id, id, now(), 'sent', address FROM recipients WHERE address = :who "
        "AND message_id IN (SELECT id FROM messages WHERE account_id = :account)"
    )
    engine = world.database.engine
    with engine.connect() as slow, engine.connect() as fast:
        slow_transaction = slow.begin()
        slow.execute(journal_sql, {"who": "slow@example.ch", "account": world.alice.id})
        with fast.begin():
            fast.execute(journal_sql, {"who": "fast@example.ch", "account": world.alice.id})

        meanwhile = world.journal().status_changes(world.alice, cursor=cursor, page_size=None)
        assert meanwhile.changes == ()  # "fast" waits until "slow" has ended
        assert meanwhile.cursor == cursor
        slow_transaction.commit()

    after = world.journal().status_changes(world.alice, cursor=meanwhile.cursor, page_size=None)
    assert [(c.recipient, c.state) for c in after.changes] == [
        ("slow@example.ch", RecipientState.SENT),
        ("fast@example.ch", RecipientState.SENT),
    ]


def test_a_change_committed_between_a_pages_two_reads_is_not_skipped(world: World) -> None:
    """A page reads its changes, then where the events it looked at end. A change that
    commits between the two must not fall between them: the page's cursor stays before
    it, and the next poll shows it."""
    world.send(world.alice, "first")
    engine = world.database.engine
    late = text(
        "INSERT INTO events (message_id, recipient_id, at, kind, detail) "
        "SELECT message_id, recipient_id, at, 'sent', '250 late' FROM events WHERE kind = 'queued' "
        "AND message_id IN (SELECT id FROM messages WHERE account_id = :account)"
    )
    inserted: list[bool] = []

    def commit_between(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if "WITH chunk" in statement and "count(*)" not in statement and not inserted:
            inserted.append(True)
            with engine.connect() as other, other.begin():
                other.execute(late, {"account": world.alice.id})

    event.listen(engine, "after_cursor_execute", commit_between)
    try:
        page = world.journal().status_changes(world.alice, cursor=None, page_size=None)
    finally:
        event.remove(engine, "after_cursor_execute", commit_between)
    assert inserted
    seen = [c.state for c in page.changes]
    after = world.journal().status_changes(world.alice, cursor=page.cursor, page_size=None)
    assert seen + [c.state for c in after.changes] == [
        RecipientState.QUEUED,
        RecipientState.SENT,
    ]


# ListMessages.


def references(world: World, page_size: int = 500, **where: object) -> list[str]:
    found: list[str] = []
    cursor = None
    while True:
        page = world.journal().list_messages(
            world.alice,
            where=MessageFilter(**where),
            cursor=cursor,
            page_size=page_size,  # type: ignore[arg-type]
        )
        found += [m.reference for m in page.messages]
        cursor = page.cursor
        if cursor is None:
            return found


def test_messages_newest_first_in_pages_that_new_messages_do_not_shift(world: World) -> None:
    for number in range(1, 6):
        world.send(world.alice, f"m{number}")
    world.send(world.bob, "not-alices")
    first = world.journal().list_messages(
        world.alice, where=MessageFilter(), cursor=None, page_size=2
    )
    assert [m.reference for m in first.messages] == ["m5", "m4"]
    assert first.messages[0].recipients[0].address == "m5@example.ch"
    world.send(world.alice, "m6")  # arrives while the caller pages
    second = world.journal().list_messages(
        world.alice, where=MessageFilter(), cursor=first.cursor, page_size=2
    )
    third = world.journal().list_messages(
        world.alice, where=MessageFilter(), cursor=second.cursor, page_size=2
    )
    assert [m.reference for m in second.messages] == ["m3", "m2"]
    assert [m.reference for m in third.messages] == ["m1"]
    assert third.cursor is None
    assert references(world, page_size=4) == ["m6", "m5", "m4", "m3", "m2", "m1"]


def test_messages_with_the_same_acceptance_time_page_by_id(world: World) -> None:
    for number in range(4):
        world.clock[0] -= timedelta(seconds=1)  # send() adds one: all at the same time
        world.send(world.alice, f"same-{number}")
    assert sorted(references(world, page_size=1)) == [f"same-{n}" for n in range(4)]
    assert len(references(world, page_size=1)) == 4


def test_filters(world: World) -> None:
    world.send(world.alice, "2026-11/E1")
    world.send(world.alice, "2026-11/E2", type=MessageType.REGISTERED)
    world.send(world.alice, "2026-12/E1")
    cancelled = world.send(world.alice, "2026-12/E2")
    world.messages().cancel(world.alice, message_id=cancelled)
    middle = world.clock[0] - timedelta(seconds=1)  # when 2026-12/E1 was accepted
    world.send(world.alice, "100%_done")
    world.send(world.alice, "100xxdone")

    assert references(world, reference_prefix="2026-11/") == ["2026-11/E2", "2026-11/E1"]
    assert references(world, reference_prefix="2026-11/e") == []  # case counts
    assert references(world, reference_prefix="100%_") == ["100%_done"]  # no wildcards
    assert references(world, type=MessageType.REGISTERED) == ["2026-11/E2"]
    assert references(world, state=MessageState.CANCELLED) == ["2026-12/E2"]
    assert "2026-12/E2" not in references(world, state=MessageState.QUEUED)
    assert len(references(world, state=MessageState.QUEUED)) == 5
    assert references(world, state=MessageState.COMPLETED) == []
    assert references(
        world, accepted_from=middle, accepted_before=middle + timedelta(seconds=2)
    ) == ["2026-12/E2", "2026-12/E1"]
    with pytest.raises(ValidationError, match="AcceptedFrom must be before"):
        references(world, accepted_from=middle, accepted_before=middle)
    with pytest.raises(ValidationError, match="time zone"):
        references(world, accepted_from=middle.replace(tzinfo=None))
