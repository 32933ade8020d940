"""A host starts only with the master keys the database was written with."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from soap_service import crypto
from soap_service.domain.master_keys import reconcile_master_keys
from soap_service.errors import ConfigurationError
from soap_service.persistence.database import Database

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def database(database_url: str) -> Database:
    database = Database(database_url)
    database.upgrade()
    yield database
    database.dispose()


def reconcile(database: Database, keyring_file: Path) -> None:
    store = database.store()
    try:
        reconcile_master_keys(
            store, crypto.Keyring.load(keyring_file), str(keyring_file), lambda: NOW
        )
    finally:
        store.close()


def known(database: Database) -> set[str]:
    store = database.store()
    try:
        return set(store.known_master_keys())
    finally:
        store.close()


def test_the_first_host_registers_its_keys_and_starts_again(
    database: Database, tmp_path: Path
) -> None:
    first = tmp_path / "first.json"
    keyring = crypto.Keyring.load_or_create(first)
    reconcile(database, first)
    reconcile(database, first)
    assert known(database) == set(keyring.key_ids)


def test_a_host_with_its_own_new_keyring_does_not_start(database: Database, tmp_path: Path) -> None:
    crypto.Keyring.load_or_create(tmp_path / "first.json")
    reconcile(database, tmp_path / "first.json")
    crypto.Keyring.load_or_create(tmp_path / "second.json")

    with pytest.raises(ConfigurationError, match=r"lacks master key\(s\) k-[0-9a-f]+ .* copy"):
        reconcile(database, tmp_path / "second.json")


def test_a_key_that_changed_under_its_id_is_refused(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "first.json"
    keyring = crypto.Keyring.load_or_create(path)
    reconcile(database, path)
    document = json.loads(path.read_text())
    document["keys"][keyring.current_key_id] = "A" * 43 + "="  # 32 other bytes
    path.write_text(json.dumps(document))

    with pytest.raises(ConfigurationError, match="is not the key the database was written with"):
        reconcile(database, path)


def test_a_rotated_keyring_registers_its_new_key(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "first.json"
    old = crypto.Keyring.load_or_create(path)
    reconcile(database, path)
    new_id = crypto.Keyring.rotate(path)

    reconcile(database, path)

    assert known(database) == {old.current_key_id, new_id}
    # A host still holding only the old keyring must be given the new one.
    stale = tmp_path / "stale.json"
    stale.write_text(
        json.dumps(
            {
                "version": 1,
                "current": old.current_key_id,
                "keys": {
                    key_id: value
                    for key_id, value in json.loads(path.read_text())["keys"].items()
                    if key_id == old.current_key_id
                },
            }
        )
    )
    with pytest.raises(ConfigurationError, match=new_id):
        reconcile(database, stale)
