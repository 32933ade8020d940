"""Logging set-up. Log lines carry no request content, SQL, paths or tracebacks."""

from __future__ import annotations

import logging
import sys
import traceback

# Spyne logs whole requests (on syntax errors, at debug level, with fault strings that
# quote values): none of its loggers may write anything.
SILENCED_LOGGERS = ("spyne",)


# aiosmtpd logs every SMTP command line at INFO, addresses included, and warns of its own
# deprecations at each login: only its errors.
QUIETED_LOGGERS = {"mail.log": logging.ERROR}
# What alembic says each time a process checks the schema, before it says anything useful
# ("Running upgrade ..." stays).
ALEMBIC_PREAMBLE = ("Context impl ", "Will assume ")


class _WithoutPreamble(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(ALEMBIC_PREAMBLE)


def configure_logging(level: str = "INFO") -> None:
    # Every SOAP request logs one line. Two things each record gathers by default and no
    # format here (nor gunicorn's) prints cost more than the rest of the line, on a request
    # that finds them cold in the CPU's caches: the caller's file and line (a walk up the
    # stack) and the multiprocessing process name. The logging HOWTO's "Optimization"
    # section documents both switches. (Without the caller's location, stack_info and
    # stacklevel are ignored too; nothing here uses them.)
    logging._srcfile = None
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    silence_spyne()
    for name, least in QUIETED_LOGGERS.items():
        logging.getLogger(name).setLevel(least)
    migration = logging.getLogger("alembic.runtime.migration")
    if not any(isinstance(kept, _WithoutPreamble) for kept in migration.filters):
        migration.addFilter(_WithoutPreamble())


def silence_spyne() -> None:
    for name in SILENCED_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL + 10)
        logger.propagate = False
        logger.handlers[:] = [logging.NullHandler()]


def describe_exception(exc: BaseException) -> str:
    """The exception's type and where it was raised, as module:function:line.

    Not its message, which may quote request content or SQL, and not file paths.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    frame = frames[-1]
    module = _module_of(frame.filename)
    return f"{type(exc).__name__} at {module}:{frame.name}:{frame.lineno}"


def _module_of(filename: str) -> str:
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == filename:
            return module.__name__
    return "<unknown module>"
