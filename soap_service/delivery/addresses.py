"""Addresses as SMTP carries them."""

from __future__ import annotations

import idna


def smtp_address(address: str) -> str:
    """The domain in ASCII (IDNA 2008); a non-ASCII local part stays (it needs SMTPUTF8)."""
    local, _, domain = address.rpartition("@")
    try:
        return f"{local}@{idna.encode(domain).decode('ascii')}"
    except idna.IDNAError:
        return address
