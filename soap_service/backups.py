"""Backup and restore: the database and what reads it, together in one folder.

A backup holds a consistent copy of the database (persistence/copies.py), the master
keyring (without it no stored message can be read), the receipt and mail signing
certificates and keys, and a manifest with each file's SHA-256. A restore goes into a
fresh data folder and an empty database only: it never overwrites a keyring or merges
into data.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

from soap_service import private_files
from soap_service.errors import ConfigurationError
from soap_service.persistence import copies
from soap_service.persistence.database import Database
from soap_service.settings import Settings

MANIFEST = "manifest.json"
KEYRING = "master-keys.json"
RECEIPT_CERT, RECEIPT_KEY = "receipts.pem", "receipts-key.pem"
MAIL_CERT, MAIL_KEY = "mail-signing.pem", "mail-signing-key.pem"


def _signing_pairs(settings: Settings) -> list[tuple[str, Path, str, Path]]:
    """(name, file) of each signing certificate and its key, in a backup and in place."""
    return [
        (RECEIPT_CERT, settings.receipt_cert_file, RECEIPT_KEY, settings.receipt_key_file),
        (MAIL_CERT, settings.signing_cert_file, MAIL_KEY, settings.signing_key_file),
    ]


def back_up(settings: Settings, database: Database, folder: Path, now: datetime) -> list[str]:
    """Write a backup into `folder` (new, or empty); the files written."""
    if folder.exists() and any(folder.iterdir()):
        raise ConfigurationError(f"{folder} is not empty: back up into a new folder")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = {KEYRING: settings.master_key_file}
    for cert_name, cert_file, key_name, key_file in _signing_pairs(settings):
        if cert_file.is_file() and key_file.is_file():
            files |= {cert_name: cert_file, key_name: key_file}
    for name, source in files.items():
        private_files.create_exclusively(folder / name, source.read_bytes())
    dumped = copies.dump(database, folder)
    dumped.chmod(0o600)  # sealed content, but password hashes and wrapped keys too
    written = [*files, dumped.name]
    manifest = {
        "created_at": now.isoformat(),
        "database": "sqlite" if database.is_sqlite else "postgresql",
        "schema_revision": database.current_revision(),
        "files": {name: _digest(folder / name) for name in written},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return [*written, MANIFEST]


def restore(settings: Settings, database: Database, folder: Path) -> None:
    """Put a backup's keyring, signing files and database in place; the caller then
    upgrades the schema and checks the keyring against the database."""
    manifest = _checked_manifest(folder)
    if settings.master_key_file.exists():
        raise ConfigurationError(
            f"{settings.master_key_file} exists: restore into a fresh data folder"
        )
    settings.master_key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    copy = next(name for name in manifest if name in (copies.SQLITE_FILE, copies.POSTGRESQL_FILE))
    copies.load(database, folder / copy)
    private_files.create_exclusively(settings.master_key_file, (folder / KEYRING).read_bytes())
    for cert_name, cert_file, key_name, key_file in _signing_pairs(settings):
        if cert_name in manifest and not cert_file.exists():
            cert_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            for name, target in ((cert_name, cert_file), (key_name, key_file)):
                private_files.create_exclusively(target, (folder / name).read_bytes())


def _checked_manifest(folder: Path) -> dict[str, str]:
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigurationError(f"{folder} holds no readable backup manifest") from None
    if not isinstance(files, dict) or KEYRING not in files:
        raise ConfigurationError(f"the backup in {folder} has no keyring")
    for name, digest in files.items():
        if "/" in name or _digest(folder / name) != digest:
            raise ConfigurationError(f"the backup's {name} is missing or damaged")
    return files


def _digest(path: Path) -> str:
    """The file's SHA-256, read in blocks (a dump may be large); "" if it is missing."""
    try:
        with path.open("rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError:
        return ""
