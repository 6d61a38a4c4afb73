"""`[retries.*]` in the config sets a worker process's retry schedules."""

from __future__ import annotations

import pytest

from callhook.config import parse_config
from callhook.errors import ConfigError
from workers.retrying import DEFAULT_POLICIES, RetryPolicy, policies_from_config


def test_a_retries_table_replaces_that_schedule_only() -> None:
    raw = {"retries": {"sink_transient": {"max_attempts": 30, "base_s": 0.5, "cap_s": 5}}}
    policies = policies_from_config(parse_config(raw, {}, origin="test").retries)
    assert policies.sink_transient == RetryPolicy(max_attempts=30, base_s=0.5, cap_s=5.0)
    assert policies.vendor_transient == DEFAULT_POLICIES.vendor_transient
    assert policies.not_ready == DEFAULT_POLICIES.not_ready


def test_no_retries_table_keeps_the_defaults() -> None:
    assert policies_from_config(parse_config({}, {}, origin="test").retries) == DEFAULT_POLICIES


def test_a_bad_schedule_is_one_line_naming_the_key() -> None:
    raw = {"retries": {"not_ready": {"max_attempts": 3, "base_s": 0, "cap_s": 5}}}
    with pytest.raises(ConfigError, match=r"retries\.not_ready\.base_s"):
        parse_config(raw, {}, origin="test")


def test_a_short_retry_after_does_not_shorten_the_schedule() -> None:
    """A Slack answering 429 + Retry-After: 1 through an outage: each retry still waits its
    backoff, so the budget lasts as long as the schedule says (here at least 68 s)."""
    policy = RetryPolicy(max_attempts=30, base_s=0.5, cap_s=5.0)
    waits = [policy.delay_s(attempt, retry_after=1.0) for attempt in range(30)]
    assert sum(waits) >= 0.25 + 0.5 + 1 + 2 + 26 * 2.5
    assert all(wait >= 1.0 for wait in waits)


def test_a_long_retry_after_is_waited_in_full() -> None:
    policy = RetryPolicy(max_attempts=30, base_s=0.5, cap_s=5.0)
    assert policy.delay_s(0, retry_after=30.0) == 30.0
    assert policy.delay_s(0, retry_after=30 * 24 * 3600.0) == 6 * 24 * 3600
