"""The benchmark's baseline: a bare Spyne service that accepts the SendMessage envelope and
stores nothing, served by gunicorn exactly like the real service.

It parses the same envelope (WS-Security header included, which it ignores), deserialises
the message with its attachments and answers a small SendMessageResult. What the real
service does beyond this (authentication, schema validation, encryption, the database) is
what the benchmark measures.

Run: ``python -m bench.baseline_app`` with the same SOAP_SERVICE_* variables as
``soap-service serve`` (BIND, WORKERS, THREADS, TLS_CERT_FILE, TLS_KEY_FILE, LOG_LEVEL).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from lxml import etree
from spyne import Application, ByteArray, ComplexModel, ServiceBase, Unicode, rpc
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

from soap_service.server import HttpsServer
from soap_service.settings import load_settings
from soap_service.soap.types import TNS


class _Model(ComplexModel):
    __namespace__ = TNS


# Permissive: plain strings, nothing required, and Spyne skips elements it does not know
# (Language, ExpiryDays, HtmlBody...), so any envelope the real service accepts fits.
class Recipient(_Model):
    _type_info = [("Address", Unicode)]


class RecipientList(_Model):
    _type_info = [("Recipient", Recipient.customize(max_occurs="unbounded"))]


class Attachment(_Model):
    _type_info = [("FileName", Unicode), ("ContentType", Unicode), ("Content", ByteArray)]


class AttachmentList(_Model):
    _type_info = [("Attachment", Attachment.customize(max_occurs="unbounded"))]


class Message(_Model):
    _type_info = [
        ("Reference", Unicode),
        ("Type", Unicode),
        ("Recipients", RecipientList),
        ("Subject", Unicode),
        ("TextBody", Unicode),
        ("Attachments", AttachmentList),
    ]


class Accepted(_Model):
    _type_info = [("MessageId", Unicode), ("Reference", Unicode), ("State", Unicode)]


class BaselineService(ServiceBase):
    @rpc(Message, _returns=Accepted)
    def SendMessage(ctx: Any, Message: Any) -> Accepted:
        return Accepted(MessageId=str(uuid.uuid4()), Reference=Message.Reference, State="queued")


class _FastBase64Soap11(Soap11):
    # The real service decodes base64 in one call too (Spyne's own decoder is much slower
    # on a 68 KB text): a baseline with the slow decoder would flatter the service.
    def byte_array_from_element(self, ctx: Any, cls: Any, element: etree._Element) -> bytes:
        return base64.b64decode(element.text or "")


def build_wsgi_app() -> WsgiApplication:
    application = Application(
        [BaselineService],
        tns=TNS,
        name="MessagingPort",
        # Large requests as the service takes them (the memory bench sends 30 MiB).
        in_protocol=_FastBase64Soap11(huge_tree=True),
        out_protocol=Soap11(cleanup_namespaces=True),
    )
    return WsgiApplication(application, max_content_length=64 * 1024 * 1024)


class BaselineServer(HttpsServer):
    """The service's own gunicorn configuration (TLS, gthread, workers, threads,
    keep-alive, timeouts), only with the bare application loaded."""

    def load_config(self) -> None:
        super().load_config()
        self.cfg.set("proc_name", "soap-service-baseline")


def main() -> None:
    settings = load_settings()
    print(f"baseline: serving https://{settings.bind}/ (WSDL: ?wsdl)", flush=True)
    BaselineServer(settings, build_wsgi_app).run()


if __name__ == "__main__":
    main()
