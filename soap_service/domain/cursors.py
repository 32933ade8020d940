"""Paging cursors: opaque to the caller, signed by the service, bound to one account.

A cursor carries where a listing stopped (a position in the journal, a place among the
account's messages) and the account it was given to, with a tag of the master keyring.
It is text the caller hands back; one that was changed, was made for another listing, or
belongs to another account is refused like nonsense: Client.ValidationError, never
another account's data. Being signed, not stored, it survives restarts and crashes.
"""

from __future__ import annotations

import base64
import binascii
import struct

from soap_service import crypto
from soap_service.errors import ValidationError

_VERSION = 1
_HEADER = struct.Struct(">BQ")  # version, account id
_LONGEST = 200  # characters: a cursor is well under 100


class CursorCodec:
    def __init__(self, keyring: crypto.Keyring, purpose: bytes) -> None:
        self._keyring = keyring
        self._purpose = purpose

    def encode(self, account_id: int, position: bytes) -> str:
        data = _HEADER.pack(_VERSION, account_id) + position
        tag = self._keyring.sign_token(self._purpose, data)
        return base64.urlsafe_b64encode(data + tag).rstrip(b"=").decode("ascii")

    def decode(self, account_id: int, cursor: str) -> bytes:
        """The position a cursor of this account holds; ValidationError for any other."""
        if len(cursor) > _LONGEST:
            raise _not_ours()
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise _not_ours() from None
        tag_length = crypto.TOKEN_TAG_BYTES
        if len(raw) < _HEADER.size + tag_length:
            raise _not_ours()
        data, tag = raw[:-tag_length], raw[-tag_length:]
        if not self._keyring.token_is_genuine(self._purpose, data, tag):
            raise _not_ours()
        version, owner = _HEADER.unpack_from(data)
        if version != _VERSION or owner != account_id:
            raise _not_ours()
        return data[_HEADER.size :]


def _not_ours() -> ValidationError:
    return ValidationError(
        "Cursor: not a cursor this service gave to this account for this call; "
        "start again without one"
    )
