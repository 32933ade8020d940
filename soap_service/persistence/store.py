"""The store: every query of the service, for one request, on one connection.

Each concern's queries live in their own module; `SqlStore` puts them together so that one
request's queries share its connection (transactions.py). It implements the domain's
`Store` protocol (domain/ports.py).

How SQL is written here: Core statements for plain queries; `text()` where the SQL is
easier to read as SQL (claims, leases, state changes), each written once with its
PostgreSQL-only row locks filled in by `row_lock`; the drivers' own SQL only for
SendMessage's insert, the hot path (message_insert.py). Not the ORM: the hot path runs a
few inserts and the ORM's unit of work cost more than the inserts themselves.
"""

from __future__ import annotations

from soap_service.persistence.account_mails import AccountMailQueries
from soap_service.persistence.accounts import AccountQueries
from soap_service.persistence.delivery import DeliveryQueries
from soap_service.persistence.inbox import InboxQueries
from soap_service.persistence.journal import JournalQueries
from soap_service.persistence.logbook import LogbookQueries
from soap_service.persistence.login_failures import LoginFailureQueries
from soap_service.persistence.messages import MessageQueries
from soap_service.persistence.monitoring import MonitoringQueries
from soap_service.persistence.organisations import OrganisationQueries
from soap_service.persistence.pickup import PickupQueries
from soap_service.persistence.receipts import ReceiptQueries
from soap_service.persistence.recipient_accounts import RecipientAccountQueries
from soap_service.persistence.retention import RetentionQueries
from soap_service.persistence.sender_reports import SenderReportQueries
from soap_service.persistence.teams import TeamQueries


class SqlStore(
    AccountQueries,
    AccountMailQueries,
    LoginFailureQueries,
    MessageQueries,
    MonitoringQueries,
    JournalQueries,
    LogbookQueries,
    OrganisationQueries,
    DeliveryQueries,
    InboxQueries,
    PickupQueries,
    RecipientAccountQueries,
    ReceiptQueries,
    RetentionQueries,
    SenderReportQueries,
    TeamQueries,
):
    """Every query, on the request's one connection; `close()` gives it back."""
