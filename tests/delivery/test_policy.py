"""RetryPolicy: what an SMTP answer means for a recipient, and when to try again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from soap_service.domain.delivery import DeliveryPath, Outcome, OutcomeKind, RetryPolicy
from soap_service.domain.model import RecipientState
from soap_service.settings import load_settings

ACCEPTED_AT = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def policy() -> RetryPolicy:
    """The policy as the worker builds it from the default settings."""
    delivery = load_settings({}).delivery
    return RetryPolicy(
        minimum=timedelta(seconds=delivery.retry_min_seconds),
        maximum=timedelta(seconds=delivery.retry_max_seconds),
        give_up=timedelta(seconds=delivery.give_up_seconds),
    )


def temporary(detail: str = "451 4.3.0 try again later") -> Outcome:
    return Outcome(kind=OutcomeKind.TEMPORARY, detail=detail)


def test_default_settings_are_postfix_like() -> None:
    delivery = load_settings({}).delivery
    assert (delivery.retry_min_seconds, delivery.retry_max_seconds) == (300, 4000)
    assert delivery.give_up_seconds == 5 * 24 * 3600


def test_delays_double_from_300_seconds_up_to_the_4000_second_cap(policy: RetryPolicy) -> None:
    delays = [policy.delay(attempts).total_seconds() for attempts in range(1, 7)]
    assert delays == [300, 600, 1200, 2400, 4000, 4000]


def test_the_delay_stays_capped_for_many_attempts(policy: RetryPolicy) -> None:
    assert policy.delay(39) == timedelta(seconds=4000)


# With the defaults the 40th attempt comes about 1.7 days after acceptance, and five days
# of retries make about 110 attempts.
@pytest.mark.parametrize("attempts", [40, 110, 5000])
def test_the_delay_does_not_overflow_after_many_attempts(
    policy: RetryPolicy, attempts: int
) -> None:
    assert policy.delay(attempts) == timedelta(seconds=4000)


@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 5, 6])
def test_a_temporary_failure_is_deferred_by_the_delay(policy: RetryPolicy, attempts: int) -> None:
    now = ACCEPTED_AT + timedelta(hours=2)
    decision = policy.decide(temporary(), attempts=attempts, since=ACCEPTED_AT, now=now)
    assert decision.state is RecipientState.DEFERRED
    assert decision.next_attempt_at == now + policy.delay(attempts)
    assert decision.detail == "451 4.3.0 try again later"


def test_250_is_sent(policy: RetryPolicy) -> None:
    outcome = Outcome(kind=OutcomeKind.ACCEPTED, detail="relay accepted the mail")
    decision = policy.decide(outcome, attempts=1, since=ACCEPTED_AT, now=ACCEPTED_AT)
    assert decision.state is RecipientState.SENT
    assert decision.next_attempt_at is None
    assert decision.detail == "relay accepted the mail"


def test_250_after_many_days_is_still_sent(policy: RetryPolicy) -> None:
    outcome = Outcome(kind=OutcomeKind.ACCEPTED, detail="ok")
    now = ACCEPTED_AT + timedelta(days=6)
    decision = policy.decide(outcome, attempts=40, since=ACCEPTED_AT, now=now)
    assert decision.state is RecipientState.SENT


@pytest.mark.parametrize("code", ["421 4.7.0 closing", "450 4.2.0 mailbox busy", "452 4.3.1"])
def test_every_4xx_is_deferred_with_a_next_attempt(policy: RetryPolicy, code: str) -> None:
    now = ACCEPTED_AT + timedelta(minutes=1)
    decision = policy.decide(temporary(code), attempts=1, since=ACCEPTED_AT, now=now)
    assert decision.state is RecipientState.DEFERRED
    assert decision.next_attempt_at == now + timedelta(seconds=300)
    assert decision.detail == code


def test_5xx_is_failed_with_the_servers_reply(policy: RetryPolicy) -> None:
    reply = "550 5.1.1 <anna@example.ch>: Recipient address rejected"
    outcome = Outcome(kind=OutcomeKind.PERMANENT, detail=reply)
    decision = policy.decide(outcome, attempts=1, since=ACCEPTED_AT, now=ACCEPTED_AT)
    assert decision.state is RecipientState.FAILED
    assert decision.next_attempt_at is None
    assert decision.detail == reply


def test_a_temporary_failure_after_five_days_gives_up(policy: RetryPolicy) -> None:
    now = ACCEPTED_AT + timedelta(days=5, seconds=1)
    decision = policy.decide(temporary(), attempts=20, since=ACCEPTED_AT, now=now)
    assert decision.state is RecipientState.FAILED
    assert decision.next_attempt_at is None
    assert decision.detail == "gave up after 20 attempts: 451 4.3.0 try again later"


def test_five_days_of_retries_give_up(policy: RetryPolicy) -> None:
    now = ACCEPTED_AT + timedelta(days=5, seconds=1)
    decision = policy.decide(temporary(), attempts=110, since=ACCEPTED_AT, now=now)
    assert decision.state is RecipientState.FAILED
    assert decision.detail.startswith("gave up after 110 attempts")


def test_a_temporary_failure_well_within_five_days_is_deferred(policy: RetryPolicy) -> None:
    now = ACCEPTED_AT + timedelta(days=4)
    decision = policy.decide(temporary(), attempts=30, since=ACCEPTED_AT, now=now)
    assert decision.state is RecipientState.DEFERRED
    assert decision.next_attempt_at == now + timedelta(seconds=4000)


def test_a_temporary_failure_before_five_days_have_passed_is_not_final(
    policy: RetryPolicy,
) -> None:
    now = ACCEPTED_AT + timedelta(days=5) - timedelta(minutes=30)
    decision = policy.decide(temporary(), attempts=30, since=ACCEPTED_AT, now=now)
    assert decision.state is RecipientState.DEFERRED


def test_give_up_is_configurable() -> None:
    policy = RetryPolicy(
        minimum=timedelta(seconds=10),
        maximum=timedelta(seconds=40),
        give_up=timedelta(minutes=5),
    )
    assert [policy.delay(n).total_seconds() for n in range(1, 5)] == [10, 20, 40, 40]
    late = ACCEPTED_AT + timedelta(minutes=6)
    decision = policy.decide(temporary(), attempts=9, since=ACCEPTED_AT, now=late)
    assert decision.state is RecipientState.FAILED
    assert decision.detail.startswith("gave up")


# Gateway delivery (issue 14): the message itself handed to the organisation's gateway.


def test_a_gateway_that_accepts_makes_the_recipient_delivered(policy: RetryPolicy) -> None:
    accepted = Outcome(kind=OutcomeKind.ACCEPTED, detail="mx.firm.example accepted the mail")
    decision = policy.decide(
        accepted, attempts=1, since=ACCEPTED_AT, now=ACCEPTED_AT, path=DeliveryPath.GATEWAY
    )
    assert (decision.state, decision.next_attempt_at, decision.fall_back) == (
        RecipientState.DELIVERED,
        None,
        False,
    )
    assert decision.state.is_final


@pytest.mark.parametrize("fallback", [False, True])
def test_a_gateway_refusing_the_recipient_fails_it_whatever_the_fallback(
    policy: RetryPolicy, fallback: bool
) -> None:
    """A 5xx is the gateway's answer, not an unreachable gateway: no notification."""
    refused = Outcome(kind=OutcomeKind.PERMANENT, detail="550 5.1.1 no such user")
    decision = policy.decide(
        refused,
        attempts=1,
        since=ACCEPTED_AT,
        now=ACCEPTED_AT,
        path=DeliveryPath.GATEWAY,
        fallback=fallback,
    )
    assert (decision.state, decision.fall_back) == (RecipientState.FAILED, False)


def test_an_unreached_gateway_is_retried_like_any_delivery(policy: RetryPolicy) -> None:
    now = ACCEPTED_AT + timedelta(days=4)
    decision = policy.decide(
        temporary(),
        attempts=3,
        since=ACCEPTED_AT,
        now=now,
        path=DeliveryPath.GATEWAY,
        fallback=True,
    )
    assert decision.state is RecipientState.DEFERRED
    assert decision.next_attempt_at == now + timedelta(seconds=1200)
    assert not decision.fall_back


@pytest.mark.parametrize("fallback", [False, True])
def test_after_the_retry_time_a_gateway_fails_or_gives_way_to_a_notification(
    policy: RetryPolicy, fallback: bool
) -> None:
    now = ACCEPTED_AT + timedelta(days=5)
    decision = policy.decide(
        temporary("mx.firm.example does not offer STARTTLS; nothing sent"),
        attempts=70,
        since=ACCEPTED_AT,
        now=now,
        path=DeliveryPath.GATEWAY,
        fallback=fallback,
    )
    if fallback:
        assert (decision.state, decision.next_attempt_at, decision.fall_back) == (
            RecipientState.DEFERRED,
            now,
            True,
        )
        assert decision.detail.startswith("gateway given up after 70 attempts, a notification")
    else:
        assert (decision.state, decision.fall_back) == (RecipientState.FAILED, False)


def test_a_notification_after_the_fallback_has_a_retry_time_of_its_own(
    policy: RetryPolicy,
) -> None:
    fell_back = ACCEPTED_AT + timedelta(days=5)
    decision = policy.decide(
        temporary(), attempts=71, since=fell_back, now=fell_back + timedelta(days=1)
    )
    assert decision.state is RecipientState.DEFERRED
