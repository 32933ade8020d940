"""Which secure recipient an envelope address names.

`anna@example.ch` + the service's suffix (IncaMail: `anna@example.ch.incamail.ch`) is the
secure recipient `anna@example.ch`: the way a mail program's user writes to one, through
any mail server. A plain address from an authenticated sender (a payroll program that
uses the service as its SMTP server) is that recipient itself: everything the channel
accepts is a secure message, so there is no address that would go out unprotected.
"""

from __future__ import annotations


def secure_recipient(address: str, suffix: str) -> str:
    local, at, domain = address.rpartition("@")
    if at and len(domain) > len(suffix) and domain.lower().endswith(suffix):
        domain = domain[: -len(suffix)]
    return f"{local}{at}{domain}"
