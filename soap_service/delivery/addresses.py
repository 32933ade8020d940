"""Addresses as SMTP carries them."""

from __future__ import annotations

import functools

import idna


def smtp_address(address: str) -> str:
    """The domain in ASCII (IDNA 2008); a non-ASCII local part stays (it needs SMTPUTF8)."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{ascii_domain(domain)}"


@functools.lru_cache(maxsize=4096)  # a payroll run has thousands of addresses, few domains
def ascii_domain(domain: str) -> str:
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain).decode("ascii")
    except idna.IDNAError:
        return domain
