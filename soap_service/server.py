"""Serving the API over HTTPS with gunicorn."""

from __future__ import annotations

import gc
import ssl
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from soap_service.allocator import tune_for_large_reads
from soap_service.settings import Settings

WsgiApp = Callable[..., Any]


def _tls_context(config: Any, default_ssl_context_factory: Any) -> ssl.SSLContext:
    context: ssl.SSLContext = default_ssl_context_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class HttpsServer(BaseApplication):
    """gunicorn with the service's settings; `app` builds the WSGI application in each
    worker process, after the fork."""

    def __init__(self, settings: Settings, app: Callable[[], WsgiApp]) -> None:
        self._settings = settings
        self._app = app
        super().__init__()

    def load_config(self) -> None:
        settings = self._settings
        options = {
            "bind": [settings.bind],
            "workers": settings.workers,
            # Threads keep a worker answering health checks while one thread receives a
            # slow 30 MB upload.
            "worker_class": "gthread",
            "threads": settings.threads,
            "timeout": settings.worker_timeout,
            "graceful_timeout": 30,
            "keepalive": 5,
            "certfile": str(settings.tls_cert_file),
            "keyfile": str(settings.tls_key_file),
            "ssl_context": _tls_context,
            "errorlog": "-",
            "loglevel": settings.log_level.lower(),
            "proc_name": "soap-service",
            # gunicorn's runtime control socket is one fixed path per user: two services
            # on one host would fight over it, and nothing here uses it.
            "control_socket_disable": True,
            # The app is built in each worker after the fork: no shared database sockets.
            "preload_app": False,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> WsgiApp:
        app = self._app()
        # What exists now (modules, Spyne's types, the schema, the pools) lives as long as
        # the worker: out of the collector's sight, a full collection no longer walks it
        # again and again while a SendMessages batch allocates (a tenth of its CPU).
        gc.freeze()
        tune_for_large_reads()
        return app
