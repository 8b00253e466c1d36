"""The retry policy, pure: which outcomes are retried, when, and when a delivery ends."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from culm.errors import InvalidInput
from culm.store.webhooks import DeliveryStatus
from culm.webhooks.delivery import Outcome, backoff, next_step, retry_after
from culm.webhooks.patterns import check_patterns, matches, split

NOW = 1_000_000.0
DEADLINE = NOW + 86_400


def step(
    outcome: Outcome, attempts: int = 1, now: float = NOW, jitter: float = 0.5
) -> tuple[DeliveryStatus, float | None]:
    return next_step(
        outcome, attempts=attempts, now=now, deadline=DEADLINE, base=5, cap=3600, jitter=jitter
    )


class TestNextStep:
    @pytest.mark.parametrize(
        ("outcome", "status"),
        [
            (Outcome(1, status_code=200), DeliveryStatus.DELIVERED),
            (Outcome(1, status_code=204), DeliveryStatus.DELIVERED),
            (Outcome(1, status_code=301), DeliveryStatus.FAILED),
            (Outcome(1, status_code=400), DeliveryStatus.FAILED),
            (Outcome(1, status_code=404), DeliveryStatus.FAILED),
            (Outcome(1, status_code=410), DeliveryStatus.FAILED),
            (Outcome(1, error="refused", refused=True), DeliveryStatus.FAILED),
            (Outcome(1, status_code=429), DeliveryStatus.PENDING),
            (Outcome(1, status_code=500), DeliveryStatus.PENDING),
            (Outcome(1, status_code=503), DeliveryStatus.PENDING),
            (Outcome(1, error="ConnectError: refused"), DeliveryStatus.PENDING),
            (Outcome(1, error="timed out after 10s"), DeliveryStatus.PENDING),
        ],
    )
    def test_what_is_retried(self, outcome: Outcome, status: DeliveryStatus) -> None:
        assert step(outcome)[0] is status

    def test_delays_double_with_jitter_up_to_the_cap(self) -> None:
        failed = Outcome(1, status_code=500)
        for attempts, full in [(1, 5), (2, 10), (3, 20), (10, 2560), (11, 3600), (500, 3600)]:
            low = step(failed, attempts, jitter=0.0)[1]
            high = step(failed, attempts, jitter=0.999999)[1]
            assert low == NOW + full / 2
            assert high is not None and NOW + full * 0.99 < high <= NOW + full

    def test_retry_after_is_honoured_even_past_the_cap(self) -> None:
        assert step(Outcome(1, status_code=429, retry_after=30))[1] == NOW + 30
        assert step(Outcome(1, status_code=503, retry_after=7200))[1] == NOW + 7200
        assert step(Outcome(1, status_code=429, retry_after=0))[1] == NOW + backoff(1, 5, 3600, 0.5)

    def test_the_deadline_ends_the_retries(self) -> None:
        assert step(Outcome(1, status_code=500), now=DEADLINE) == (DeliveryStatus.FAILED, None)
        assert step(Outcome(1, status_code=500), now=DEADLINE - 1) == (
            DeliveryStatus.PENDING,
            DEADLINE,
        )
        late = Outcome(1, status_code=429, retry_after=86_401)
        assert step(late) == (DeliveryStatus.FAILED, None)


class TestRetryAfter:
    def test_seconds_and_http_dates(self) -> None:
        assert retry_after("120", NOW) == 120
        assert retry_after(" 3 ", NOW) == 3
        assert retry_after(formatdate(NOW + 60, usegmt=True), NOW) == 60
        assert retry_after(formatdate(NOW - 60, usegmt=True), NOW) == 0
        assert retry_after(None, NOW) is None
        assert retry_after("soon", NOW) is None
        assert retry_after("-5", NOW) is None


class TestPatterns:
    def test_exact_types_and_prefixes(self) -> None:
        patterns = check_patterns(["run.completed", "tool.*", "run.completed", "my_app.step.*"])
        assert patterns == ["run.completed", "tool.*", "my_app.step.*"]
        assert matches(patterns, "run.completed")
        assert matches(patterns, "tool.failed") and matches(patterns, "my_app.step.done")
        assert not matches(patterns, "run.failed") and not matches(patterns, "toolbox.x")
        assert split(patterns) == (["run.completed"], ["my_app.step.", "tool."])

    @pytest.mark.parametrize(
        "patterns", [[], ["*"], ["run.*.x"], ["run completed"], ["a" * 129], ["x"] * 65 + ["y"]]
    )
    def test_refused(self, patterns: list[str]) -> None:
        if len(patterns) > 64:
            patterns = [f"t{i}" for i in range(65)]
        with pytest.raises(InvalidInput):
            check_patterns(patterns)
