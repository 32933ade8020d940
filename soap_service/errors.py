"""The service's errors: one base class, one subclass per cause a caller can act on.

Each error carries the SOAP 1.1 fault code that names its cause and a message written for
the person reading the fault. Messages never contain message content, SQL, file paths or
tracebacks: they are built from fixed text, field names and limits only.
"""

from __future__ import annotations

from typing import ClassVar


class FaultCode:
    """Fault codes are part of the API contract (see docs and the WSDL's documentation)."""

    AUTHENTICATION_FAILED = "Client.AuthenticationFailed"
    AUTHENTICATION_THROTTLED = "Client.AuthenticationThrottled"
    MALFORMED_REQUEST = "Client.MalformedRequest"
    FORBIDDEN_XML = "Client.ForbiddenXml"
    UNSUPPORTED_MEDIA_TYPE = "Client.UnsupportedMediaType"
    UNKNOWN_OPERATION = "Client.UnknownOperation"
    VALIDATION_ERROR = "Client.ValidationError"
    INVALID_ADDRESS = "Client.InvalidAddress"
    INVALID_BASE64 = "Client.InvalidBase64"
    ATTACHMENT_REJECTED = "Client.AttachmentRejected"
    MESSAGE_TOO_LARGE = "Client.MessageTooLarge"
    DUPLICATE_REFERENCE = "Client.DuplicateReference"
    NOT_FOUND = "Client.NotFound"
    # SOAP 1.1 section 4.4.1 codes, not refinements of Client or Server.
    VERSION_MISMATCH = "VersionMismatch"
    MUST_UNDERSTAND = "MustUnderstand"
    UNAVAILABLE = "Server.Unavailable"
    INTERNAL_ERROR = "Server.InternalError"


class SoapServiceError(Exception):
    """Base class of every error this package raises."""


class ServiceError(SoapServiceError):
    """An error reported to the caller as a SOAP fault with its own code."""

    code: ClassVar[str] = FaultCode.INTERNAL_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AuthenticationFailed(ServiceError):
    code = FaultCode.AUTHENTICATION_FAILED


class AuthenticationThrottled(ServiceError):
    """Too many failed logins for the username or from the address: retry after the wait
    the message says."""

    code = FaultCode.AUTHENTICATION_THROTTLED


class MalformedRequest(ServiceError):
    code = FaultCode.MALFORMED_REQUEST


class ForbiddenXml(ServiceError):
    code = FaultCode.FORBIDDEN_XML


class UnsupportedMediaType(ServiceError):
    code = FaultCode.UNSUPPORTED_MEDIA_TYPE


class UnknownOperation(ServiceError):
    code = FaultCode.UNKNOWN_OPERATION


class ValidationError(ServiceError):
    code = FaultCode.VALIDATION_ERROR


class InvalidAddress(ValidationError):
    code = FaultCode.INVALID_ADDRESS


class InvalidBase64(ValidationError):
    code = FaultCode.INVALID_BASE64


class AttachmentRejected(ValidationError):
    """An attachment the policy refuses: which one (1-based) and why, so that a channel
    can name it the way its sender knows it (SMTP: by its file name)."""

    code = FaultCode.ATTACHMENT_REJECTED

    def __init__(self, message: str, *, position: int, reason: str) -> None:
        super().__init__(message)
        self.position = position
        self.reason = reason


class MessageTooLarge(ValidationError):
    code = FaultCode.MESSAGE_TOO_LARGE


class DuplicateReference(ServiceError):
    code = FaultCode.DUPLICATE_REFERENCE


class NotFound(ServiceError):
    code = FaultCode.NOT_FOUND


class VersionMismatch(ServiceError):
    code = FaultCode.VERSION_MISMATCH


class MustUnderstand(ServiceError):
    code = FaultCode.MUST_UNDERSTAND


class Unavailable(ServiceError):
    """The database or another dependency cannot be reached; the caller may retry."""

    code = FaultCode.UNAVAILABLE


class InternalError(ServiceError):
    code = FaultCode.INTERNAL_ERROR


class ConfigurationError(SoapServiceError):
    """A setting is missing or wrong: reported to the operator at start, never to callers."""


class Conflict(SoapServiceError):
    """A uniqueness rule of the database stopped a write; the caller decides what it means."""


class AccountExists(Conflict):
    """An account with this username exists."""


class DeliveryError(SoapServiceError):
    """A notification could not be handed to a mail server (no route, the server away or
    busy): the delivery worker turns it into the recipient's outcome. Not a ServiceError:
    it never reaches a SOAP caller as a fault."""
