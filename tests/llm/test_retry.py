"""Backoff before retrying a transient model failure."""

from __future__ import annotations

import pytest

from culm.llm import RetryPolicy


@pytest.mark.parametrize(("retry", "low", "high"), [(1, 0.25, 0.5), (2, 0.5, 1.0), (3, 1.0, 2.0)])
def test_delays_double_with_jitter(retry: int, low: float, high: float) -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=10)
    for _ in range(20):
        assert low <= policy.delay(retry) <= high


def test_delays_are_capped() -> None:
    assert RetryPolicy(initial_delay=1, max_delay=3).delay(10) <= 3


@pytest.mark.parametrize(("hint", "expected"), [(0.0, 0.0), (2.0, 2.0), (60.0, 10.0)])
def test_retry_after_wins_within_the_cap(hint: float, expected: float) -> None:
    assert RetryPolicy(max_delay=10).delay(1, retry_after=hint) == expected
