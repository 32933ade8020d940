"""Failed logins against the running service (its own in this module: the throttle counts
by client address, and every test here comes from 127.0.0.1)."""

from __future__ import annotations

import time

from tests.e2e.conftest import Sender
from tests.support import ServiceProcess, envelope, fault_of, security_header

GET_STATUS = "<m:GetStatus><m:Reference>none</m:Reference></m:GetStatus>"


def login(service: ServiceProcess, username: str, password: str) -> str:
    """ "ok" (the call got past authentication), or the fault code."""
    response = service.post(envelope(GET_STATUS, security_header(username, password)))
    code, _ = fault_of(response)
    return "ok" if code == "Client.NotFound" else code


def test_twenty_wrong_passwords_cost_few_checks_and_the_right_one_soon_works(
    service: ServiceProcess, sender: Sender
) -> None:
    answers = [login(service, sender.username, f"wrong-{n}") for n in range(20)]
    failed = answers.count("Client.AuthenticationFailed")
    # Five free failures, then a wait of 1 s, 2 s ...: at most a check or two more while
    # these twenty requests run, each one after its wait.
    assert 5 <= failed <= 7, answers
    assert answers[:5] == ["Client.AuthenticationFailed"] * 5
    assert answers.count("Client.AuthenticationThrottled") == 20 - failed
    deadline = time.monotonic() + 30
    while (answer := login(service, sender.username, sender.password)) != "ok":
        assert answer == "Client.AuthenticationThrottled"
        assert time.monotonic() < deadline, "still throttled after half a minute"
        time.sleep(0.5)


def test_an_unknown_username_gets_the_same_answers_as_a_known_one(
    service: ServiceProcess, other_sender: Sender
) -> None:
    known = [login(service, other_sender.username, f"wrong-{n}") for n in range(6)]
    unknown = [login(service, "nobody-at-all", f"wrong-{n}") for n in range(6)]
    assert (
        known == unknown == ["Client.AuthenticationFailed"] * 5 + ["Client.AuthenticationThrottled"]
    )
