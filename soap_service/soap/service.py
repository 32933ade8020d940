"""The SOAP operations. Each converts its input, calls the domain and converts the result;
the docstrings are published in the WSDL. Errors are raised as they are: faults.py turns
them into faults."""

from __future__ import annotations

from typing import Any

from spyne import DateTime, Integer32, ServiceBase, Unicode, rpc

from soap_service.domain.journal import (
    DEFAULT_MESSAGES_PAGE,
    MAX_CHANGES_PAGE,
    MAX_MESSAGES_PAGE,
)
from soap_service.domain.messages import MAX_BATCH_MESSAGES
from soap_service.soap import convert
from soap_service.soap.call import call_of
from soap_service.soap.faults import CarriedError
from soap_service.soap.protocol import RefusedEntry
from soap_service.soap.types import (
    MessageList,
    MessageResultList,
    MessageState,
    MessageStatus,
    MessageType,
    OutgoingMessage,
    Receipt,
    ReceiptKind,
    StatusChangeList,
    optional,
    required,
)


class MessagingService(ServiceBase):
    @rpc(
        required(OutgoingMessage, "The message to send."),
        _returns=required(MessageStatus, "The stored message and its recipients."),
    )
    def SendMessage(ctx: Any, Message: Any) -> Any:
        """Send one message. The reply comes after the message is stored; resending the same
        Reference with the same content returns the same MessageId, with other content it
        is the fault Client.DuplicateReference."""
        call = call_of(ctx)
        status = call.services.messages.send(call.sender, convert.draft_from_soap(Message))
        return convert.status_to_soap(status)

    @rpc(
        required(
            OutgoingMessage.customize(max_occurs=MAX_BATCH_MESSAGES),
            f"1 to {MAX_BATCH_MESSAGES} messages, each as in SendMessage.",
        ),
        _returns=required(MessageResultList, "One result per message, in the request's order."),
    )
    def SendMessages(ctx: Any, Message: Any) -> Any:
        """Send up to 100 messages in one call (a payroll run in batches). Each message is
        handled as SendMessage would handle it alone, and has its own result: its status,
        or its own fault code and text; one bad message does not refuse the others. The
        answer comes after every accepted message is stored. Each message's Reference
        keeps it idempotent: resending a batch answers with the original messages. The
        whole request is refused (one fault) only for more than 100 messages, a request
        over the size limit, or attachments over 30 MiB in all."""
        call = call_of(ctx)
        entries: list[Any] = list(Message)
        drafts = [
            convert.draft_from_soap(entry)
            for entry in entries
            if not isinstance(entry, RefusedEntry)
        ]
        sent = iter(call.services.messages.send_batch(call.sender, drafts) if drafts else ())
        return convert.batch_to_soap(
            [
                (entry.reference, entry.error)
                if isinstance(entry, RefusedEntry)
                else (entry.Reference, next(sent))
                for entry in entries
            ]
        )

    @rpc(
        optional(Unicode, "The MessageId returned by SendMessage."),
        optional(Unicode, "Or the sender's Reference."),
        _returns=required(MessageStatus, "The message and every recipient's state."),
    )
    def GetStatus(ctx: Any, MessageId: Any, Reference: Any) -> Any:
        """The state of a message and of each recipient, by MessageId or by Reference (give
        exactly one). Another sender's message answers Client.NotFound."""
        call = call_of(ctx)
        status = call.services.messages.status(
            call.sender, message_id=MessageId, reference=Reference
        )
        return convert.status_to_soap(status)

    @rpc(
        optional(Unicode, "The MessageId returned by SendMessage."),
        optional(Unicode, "Or the sender's Reference."),
        _returns=required(MessageStatus, "The message and every recipient's state after it."),
    )
    def CancelMessage(ctx: Any, MessageId: Any, Reference: Any) -> Any:
        """Withdraw a message, by MessageId or by Reference (give exactly one). Every
        recipient who has not opened it yet becomes cancelled, and the link in its
        notification says the message was withdrawn; recipients in a final state keep it.
        Calling it again changes nothing. Another sender's message answers Client.NotFound."""
        call = call_of(ctx)
        status = call.services.messages.cancel(
            call.sender, message_id=MessageId, reference=Reference
        )
        return convert.status_to_soap(status)

    @rpc(
        optional(Unicode, "The NextCursor of the previous call; none: from the start."),
        optional(
            Integer32, f"Changes per page, 1 to {MAX_CHANGES_PAGE}; default {MAX_CHANGES_PAGE}."
        ),
        _returns=required(StatusChangeList, "The changes, oldest first, and where to go on."),
    )
    def GetStatusChanges(ctx: Any, Cursor: Any, PageSize: Any) -> Any:
        """Every state change of the recipients of your messages since the cursor, oldest
        first: poll with the NextCursor of each answer (keep it across restarts) and you
        see each change exactly once. Without a cursor, from your first message on. A
        change shows once every transaction begun before it has ended, within moments. A
        cursor that was altered or given to another account answers
        Client.ValidationError."""
        call = call_of(ctx)
        page = call.services.journal.status_changes(call.sender, cursor=Cursor, page_size=PageSize)
        return convert.changes_to_soap(page)

    @rpc(
        optional(MessageState, "Only messages in this state."),
        optional(MessageType, "Only messages of this type."),
        optional(DateTime, "Only messages accepted at or after this time."),
        optional(DateTime, "Only messages accepted before this time."),
        optional(Unicode, "Only messages whose Reference starts with this text."),
        optional(
            Integer32,
            f"Messages per page, 1 to {MAX_MESSAGES_PAGE}; default {DEFAULT_MESSAGES_PAGE}.",
        ),
        optional(Unicode, "The NextCursor of the previous page; none: the first page."),
        _returns=required(MessageList, "A page of messages, newest first."),
    )
    def ListMessages(
        ctx: Any,
        State: Any,
        Type: Any,
        AcceptedFrom: Any,
        AcceptedBefore: Any,
        ReferencePrefix: Any,
        PageSize: Any,
        Cursor: Any,
    ) -> Any:
        """Your messages, newest first, with every recipient's state, filtered by message
        state, type, acceptance time and Reference prefix, a page at a time. Ask for the
        next page with the same filters and the NextCursor; messages that arrive meanwhile
        do not shift the pages. A cursor that was altered or given to another account
        answers Client.ValidationError."""
        call = call_of(ctx)
        page = call.services.journal.list_messages(
            call.sender,
            where=convert.message_filter(
                state=State,
                message_type=Type,
                accepted_from=AcceptedFrom,
                accepted_before=AcceptedBefore,
                reference_prefix=ReferencePrefix,
            ),
            cursor=Cursor,
            page_size=PageSize,
        )
        return convert.message_page_to_soap(page)

    @rpc(
        required(ReceiptKind, "Which receipt."),
        optional(Unicode, "The MessageId returned by SendMessage."),
        optional(Unicode, "Or the sender's Reference."),
        optional(Unicode, "The recipient, for pickup, refusal and expiry receipts."),
        _returns=required(Receipt, "The signed receipt."),
    )
    def GetReceipt(
        ctx: Any, Kind: Any, MessageId: Any, Reference: Any, RecipientAddress: Any
    ) -> Any:
        """A signed PDF receipt of a registered message, by MessageId or by Reference (give
        exactly one): submission (the service accepted it), or, for one recipient, pickup
        (accepted), refusal or expiry. A receipt not (yet) due, such as a pickup receipt
        before the recipient accepted, answers Client.NotFound; a message that is not
        registered answers Client.ValidationError. Asked again, the same document."""
        call = call_of(ctx)
        receipt = call.services.receipts.receipt(
            call.sender,
            convert.receipt_kind(Kind),
            message_id=MessageId,
            reference=Reference,
            recipient=RecipientAddress,
        )
        return convert.receipt_to_soap(receipt)

    @classmethod
    def call_wrapper(cls, ctx: Any, args: Any = None) -> Any:
        """Every error of an operation travels on through Spyne unchanged (see CarriedError)."""
        try:
            return super().call_wrapper(ctx, args)
        except Exception as exc:
            raise CarriedError(exc) from exc
