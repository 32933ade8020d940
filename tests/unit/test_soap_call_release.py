"""A SOAP call lets go of its message when it ends, without waiting for the garbage
collector: Spyne's method contexts are reference cycles, and the service never asks for a
collection (spyne.const.MIN_GC_INTERVAL), so a 30 MiB message kept in one would stay in
memory until the collector happened to pass by."""

from __future__ import annotations

import base64
import gc
import logging
import os
import tracemalloc
from collections.abc import Iterator

import pytest

from soap_service.logs import silence_spyne
from tests.fuzz.test_fuzz_envelopes import Target
from tests.support import envelope, send_message_xml

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield Target(tmp_path_factory.mktemp("release"))


@pytest.fixture(autouse=True)
def spyne_silenced() -> Iterator[None]:
    """As in the service (logs.silence_spyne): a log record Spyne writes of a failed call
    holds its exception, and pytest's log capture would keep it, message and all."""
    spyne = logging.getLogger("spyne")
    saved = spyne.level, spyne.propagate, spyne.handlers[:]
    silence_spyne()
    yield
    spyne.setLevel(saved[0])
    spyne.propagate, spyne.handlers[:] = saved[1], saved[2]


def allocated_after(target: Target, body: bytes) -> tuple[str, int]:
    """The answer's status, and the bytes still allocated after the call, with the
    collector off: what a call leaves behind stays."""
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        status, _, _ = target.call(body, "text/xml; charset=utf-8")
        return status, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gc.enable()


CONTENT = base64.b64encode(b"%PDF-1.4" + os.urandom(8 * MIB)).decode()


@pytest.mark.parametrize("reference", ["release-1", "release-1"], ids=["new", "resent"])
def test_a_call_leaves_nothing_of_its_message_behind(target: Target, reference: str) -> None:
    body = envelope(
        send_message_xml(reference, attachments=(("big.pdf", "application/pdf", CONTENT),)),
        target.header(),
    )
    status, left = allocated_after(target, body)
    assert status == "200 OK"
    assert left < MIB


def test_a_failed_call_leaves_nothing_of_its_message_behind(target: Target) -> None:
    content = base64.b64encode(b"MZ" + os.urandom(8 * MIB)).decode()  # a program: refused
    body = envelope(
        send_message_xml("release-2", attachments=(("run.exe", "application/pdf", content),)),
        target.header(),
    )
    status, left = allocated_after(target, body)
    assert status == "500 Internal Server Error"
    assert left < MIB
