"""Every host must hold the master keys the database was written with.

A keyring file is created on first start. On a second host that was not given a copy, that
would be a different key: messages it accepts could not be read elsewhere, and resends
arriving there would look like new content. So at start the keyring is compared with the
check values the database keeps, and a host with the wrong keys does not start.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from soap_service import crypto
from soap_service.domain.ports import MasterKeyStore
from soap_service.errors import ConfigurationError


def reconcile_master_keys(
    store: MasterKeyStore, keyring: crypto.Keyring, keyring_file: str, now: Callable[[], datetime]
) -> None:
    """Register this keyring's new keys; refuse a keyring that differs from the database's."""
    ours = keyring.check_values()
    known = store.known_master_keys()
    different = sorted(
        key_id for key_id, check in known.items() if key_id in ours and ours[key_id] != check
    )
    if different:
        raise ConfigurationError(
            f"master key {', '.join(different)} in {keyring_file} is not the key the database "
            "was written with: use the keyring file of the hosts already running"
        )
    missing = sorted(set(known) - set(ours))
    if missing:
        raise ConfigurationError(
            f"{keyring_file} lacks master key(s) {', '.join(missing)} that the database uses: "
            "copy the keyring file from a host already running the service"
        )
    store.add_master_keys(
        {key_id: check for key_id, check in ours.items() if key_id not in known}, now()
    )
