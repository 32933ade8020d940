"""The SMTP channel's process (`soap-service smtp`): one event loop for the sessions, a
pool of threads for what blocks (password checks, storing a message).

Any number of these processes may run, on any hosts sharing the database; on one host
they can share a port (SO_REUSEPORT). On SIGTERM the listener closes first, and the
submissions under way get time to commit and answer before the process ends.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from soap_service.domain.model import MessageLimits
from soap_service.domain.organisations import Organisation
from soap_service.logs import describe_exception
from soap_service.settings import SmtpChannelSettings
from soap_service.smtp.protocol import SubmissionSmtp
from soap_service.smtp.session import SmtpServices, SubmissionHandler

log = logging.getLogger(__name__)

# How long submissions under way may take to finish when the process is told to stop.
DRAIN_SECONDS = 30.0
# Password checks at once (a scrypt each): apart from the threads that store mails.
LOGIN_THREADS = 2


# How often the registered client certificates are read again: a new organisation's mail
# server is recognised within this time.
ORGANISATIONS_REFRESH_SECONDS = 30.0


def tls_context(
    cert_file: Path, key_file: Path, client_certificates: Sequence[str] = ()
) -> ssl.SSLContext:
    """The service's certificate, TLS 1.2 or newer. A client may present a certificate:
    one an operator registered (trusted as it is, with no CA: a partial chain) or one from a
    CA the system trusts; only a registered one authenticates the session (session.py)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_certificates:
        context.verify_mode = ssl.CERT_OPTIONAL
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        context.load_verify_locations(cadata="\n".join(client_certificates))
    return context


class SmtpChannel:
    def __init__(
        self,
        *,
        settings: SmtpChannelSettings,
        limits: MessageLimits,
        tls: Callable[[Sequence[str]], ssl.SSLContext],
        open_scope: Callable[[], SmtpServices],
        organisations: Callable[[], list[Organisation]],
        count: Callable[[str], None] = lambda reply: None,
    ) -> None:
        self._count = count
        self._settings = settings
        self._limits = limits
        self._tls_for = tls
        self._tls = tls(())
        self._open_scope = open_scope
        self._load_organisations = organisations

    def run(self, stop: threading.Event) -> None:
        asyncio.run(self._serve(stop))

    async def _serve(self, stop: threading.Event) -> None:
        settings = self._settings
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(
            max_workers=settings.concurrency, thread_name_prefix="smtp-submission"
        )
        logins = ThreadPoolExecutor(max_workers=LOGIN_THREADS, thread_name_prefix="smtp-login")
        handler = SubmissionHandler(
            open_scope=self._open_scope,
            settings=settings,
            limits=self._limits,
            executor=executor,
            login_executor=logins,
            count=self._count,
        )

        def new_session() -> SubmissionSmtp:
            return SubmissionSmtp(
                handler,
                hostname=settings.hostname,
                ident="soap-service secure messages",
                tls_context=self._tls,
                require_starttls=True,
                auth_required=True,
                auth_require_tls=True,
                data_size_limit=settings.max_message_bytes,
                enable_SMTPUTF8=True,
                timeout=settings.timeout_seconds,
                loop=loop,
            )

        self._use_organisations(handler, self._load_organisations())
        keeping = asyncio.create_task(self._keep_organisations(handler, executor))
        host, port = settings.bind
        server = await loop.create_server(new_session, host, port, reuse_port=True)
        log.info("SMTP channel listening on %s:%d", host, port)
        try:
            await loop.run_in_executor(None, stop.wait)
        finally:
            server.close()
            keeping.cancel()
            handler.closing = True
            await self._drain(handler)
            executor.shutdown(wait=True)
            logins.shutdown(wait=True)
            log.info("SMTP channel stopped")

    def _use_organisations(
        self, handler: SubmissionHandler, organisations: list[Organisation]
    ) -> None:
        certificates = {
            certificate.sha256: (certificate.pem, organisation)
            for organisation in organisations
            if (certificate := organisation.client_certificate) is not None
        }
        registered = {key: organisation for key, (_, organisation) in certificates.items()}
        if registered.keys() != handler.organisations.keys():
            try:
                self._tls = self._tls_for([pem for pem, _ in certificates.values()])
            except (OSError, ValueError, ssl.SSLError) as exc:
                # New certificates wait for a context that takes them; removed ones go now.
                log.error("client certificates not loaded: %s", describe_exception(exc))
                registered = {
                    key: value for key, value in registered.items() if key in handler.organisations
                }
        handler.organisations = registered

    async def _keep_organisations(
        self, handler: SubmissionHandler, executor: ThreadPoolExecutor
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(ORGANISATIONS_REFRESH_SECONDS)
            try:
                organisations = await loop.run_in_executor(executor, self._load_organisations)
                self._use_organisations(handler, organisations)
            except Exception as exc:  # the database away: keep what is known, try again
                log.warning("organisations not read again: %s", describe_exception(exc))

    async def _drain(self, handler: SubmissionHandler) -> None:
        """Let the messages being stored commit and get their 250."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while handler.submissions_under_way and loop.time() < deadline:
            await asyncio.sleep(0.05)
