"""A message's parts sealed with its own data key, each bound to the message and its place.

The writer (SendMessage) and the readers (delivery, pickup) name parts the same way here,
so a subject can never be opened as a body, nor a part moved to another message.
"""

from __future__ import annotations

from dataclasses import dataclass

from soap_service import crypto
from soap_service.domain.model import AttachmentDraft
from soap_service.domain.ports import SealedAttachment, SealedTexts

SUBJECT = "subject"
TEXT_BODY = "text"
HTML_BODY = "html"


def attachment_content(position: int) -> str:
    return f"attachment:{position}"


def attachment_name(position: int) -> str:
    return f"attachment-name:{position}"


@dataclass(frozen=True, kw_only=True)
class MessageTexts:
    """Subject as text; bodies as the UTF-8 bytes the sender gave (receipts hash them)."""

    subject: str
    text_body: bytes
    html_body: bytes | None


class MessageCipher:
    def __init__(self, data_key: bytes, message_id: str) -> None:
        self._data_key = data_key
        self._sealer = crypto.Sealer(data_key)
        self._context = message_id.encode("ascii")
        self._token_key: bytes | None = None

    @classmethod
    def create(
        cls, keyring: crypto.Keyring, message_id: str
    ) -> tuple[MessageCipher, crypto.WrappedKey]:
        """A fresh data key for a new message, and that key wrapped by the master key."""
        data_key, wrapped = keyring.new_data_key(message_id.encode("ascii"))
        return cls(data_key, message_id), wrapped

    @classmethod
    def unwrap(
        cls, keyring: crypto.Keyring, wrapped: crypto.WrappedKey, message_id: str
    ) -> MessageCipher:
        return cls(keyring.unwrap_data_key(wrapped, message_id.encode("ascii")), message_id)

    def seal(self, part: str, data: bytes) -> bytearray:
        return self._sealer.seal(self._part_context(part), data)

    def open(self, part: str, sealed: bytes | bytearray) -> bytes:
        return self._sealer.open(self._part_context(part), sealed)

    def pickup_token(self, position: int) -> str:
        """The recipient's 256-bit pickup token, derived from the message's own key: the
        same at every delivery attempt (a resent notification carries the same link),
        readable only by whoever can unwrap the key, and stored only as its hash. Made
        with a key of its own, derived from the data key, so that the key that seals
        the content is never used for anything else."""
        if self._token_key is None:
            self._token_key = crypto.derive_key(self._data_key, b"pickup-token:" + self._context)
        return crypto.token_text(crypto.hmac_sha256(self._token_key, b"%d" % position))

    def open_texts(self, sealed: SealedTexts) -> MessageTexts:
        return MessageTexts(
            subject=self.open(SUBJECT, sealed.subject).decode("utf-8"),
            text_body=self.open(TEXT_BODY, sealed.text_body),
            html_body=(
                self.open(HTML_BODY, sealed.html_body) if sealed.html_body is not None else None
            ),
        )

    def open_attachment(self, attachment: SealedAttachment) -> AttachmentDraft:
        """An attachment as its sender gave it: name, type and content."""
        position = attachment.position
        return AttachmentDraft(
            filename=self.open(attachment_name(position), attachment.sealed_filename).decode(
                "utf-8"
            ),
            content_type=attachment.content_type,
            content=self.open(attachment_content(position), attachment.sealed_content),
        )

    def _part_context(self, part: str) -> bytes:
        return self._context + b":" + part.encode("ascii")


def token_hash(token: str) -> bytes:
    """What the database keeps of a pickup token, and what a pickup link is looked up by."""
    return crypto.sha256(token.encode("ascii"))
