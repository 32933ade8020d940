"""One SOAP call as it travels through Spyne: what the guard read, the domain services the
call may use, and what the protocol learned (operation, account) for the request's log.

The web application builds it; `SoapEndpoint.answer` hands it to Spyne as the method
context's user data (`ctx.udc`); the protocol and the operations read it with `call_of`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from lxml import etree

from soap_service.domain.auth import Authenticator
from soap_service.domain.journal import Journal
from soap_service.domain.messages import MessageService
from soap_service.domain.model import Account
from soap_service.domain.receipts import ReceiptService
from soap_service.errors import ServiceError


class DomainServices(Protocol):
    """The domain entry points a SOAP call uses, for this request (container.RequestScope)."""

    @property
    def authenticator(self) -> Authenticator: ...

    @property
    def messages(self) -> MessageService: ...

    @property
    def journal(self) -> Journal: ...

    @property
    def receipts(self) -> ReceiptService: ...


@dataclass(eq=False, kw_only=True)
class SoapCall:
    envelope: etree._Element
    # MTOM parts of the request, by the path of the element that referred to them.
    binary_parts: dict[str, bytes]
    soap_action: str | None
    # The client's address, as far as it is known (failed logins are throttled by it).
    client: str | None
    services: DomainServices
    operation: str | None = None
    account: Account | None = None
    # A batch operation's entries that the schema refused, by position from 0.
    refused_entries: dict[int, ServiceError] = field(default_factory=dict)

    @property
    def sender(self) -> Account:
        """The authenticated sender: the protocol authenticates before any operation runs."""
        assert self.account is not None, "not authenticated"
        return self.account


def call_of(ctx: Any) -> SoapCall:
    """The call a Spyne method context carries."""
    call = ctx.udc
    assert isinstance(call, SoapCall), "a method context built by SoapEndpoint.answer"
    return call
