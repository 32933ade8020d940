"""The SOAP operations. Each converts its input, calls the domain and converts the result;
the docstrings are published in the WSDL."""

from __future__ import annotations

import logging
from typing import Any

from spyne import ServiceBase, Unicode, rpc

from soap_service.errors import InternalError, ServiceError
from soap_service.logs import describe_exception
from soap_service.soap import convert
from soap_service.soap.faults import ServiceFault
from soap_service.soap.protocol import SCOPE_KEY
from soap_service.soap.types import (
    MessageStatus,
    OutgoingMessage,
    Receipt,
    ReceiptKind,
    optional,
    required,
)

log = logging.getLogger(__name__)


class MessagingService(ServiceBase):
    @rpc(
        required(OutgoingMessage, "The message to send."),
        _returns=required(MessageStatus, "The stored message and its recipients."),
    )
    def SendMessage(ctx: Any, Message: Any) -> Any:
        """Send one message. The reply comes after the message is stored; resending the same
        Reference with the same content returns the same MessageId, with other content it
        is the fault Client.DuplicateReference."""
        scope = ctx.transport.req_env[SCOPE_KEY]
        status = scope.messages.send(scope.account, convert.draft_from_soap(Message))
        return convert.status_to_soap(status)

    @rpc(
        optional(Unicode, "The MessageId returned by SendMessage."),
        optional(Unicode, "Or the sender's Reference."),
        _returns=required(MessageStatus, "The message and every recipient's state."),
    )
    def GetStatus(ctx: Any, MessageId: Any, Reference: Any) -> Any:
        """The state of a message and of each recipient, by MessageId or by Reference (give
        exactly one). Another sender's message answers Client.NotFound."""
        scope = ctx.transport.req_env[SCOPE_KEY]
        status = scope.messages.status(scope.account, message_id=MessageId, reference=Reference)
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
        scope = ctx.transport.req_env[SCOPE_KEY]
        status = scope.messages.cancel(scope.account, message_id=MessageId, reference=Reference)
        return convert.status_to_soap(status)

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
        scope = ctx.transport.req_env[SCOPE_KEY]
        receipt = scope.receipts.receipt(
            scope.account,
            convert.receipt_kind(Kind),
            message_id=MessageId,
            reference=Reference,
            recipient=RecipientAddress,
        )
        return convert.receipt_to_soap(receipt)

    @classmethod
    def call_wrapper(cls, ctx: Any, args: Any = None) -> Any:
        """Every error of an operation leaves as a fault with our code and words."""
        try:
            return super().call_wrapper(ctx, args)
        except ServiceError as exc:
            raise ServiceFault(exc) from exc
        except Exception as exc:
            log.error("internal error in %s: %s", ctx.method_name, describe_exception(exc))
            raise ServiceFault(InternalError("an internal error occurred")) from exc
