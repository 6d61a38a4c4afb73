"""The one exception tree Callhook raises on purpose.

    CallhookError
    ├── ConfigError                   a bad config file or value (CLI: one line, exit 2)
    ├── DeliveryRejected              an inbound webhook we refuse (never retried by us)
    │   ├── AuthenticationFailed      -> 401; `reason` is logged, never returned
    │   ├── BadPayload                -> 400 with a short reason
    │   ├── PayloadTooLarge           -> 413
    │   └── BodyTimeout               -> 408: the body came slower than body_timeout_s
    ├── AcceptUnavailable             Redis did not confirm the write -> 503 + Retry-After
    └── UpstreamError                 an outbound call (vendor API or sink) failed
        ├── RetryableError            5xx, timeouts, connection errors: back off and retry
        │   ├── RateLimited           429: wait `retry_after` when given
        │   └── NotReadyYet           404 right after an event: the vendor has not caught up
        └── PermanentError            401/403/400/410...: dead-letter at once with the reason

Expected conditions are mapped to status codes or retries; anything else is a bug.
"""

from __future__ import annotations


class CallhookError(Exception):
    """Base of every error Callhook raises deliberately."""


class ConfigError(CallhookError):
    """The configuration is invalid. The message names the key and the problem."""


class DeliveryRejected(CallhookError):
    """An inbound delivery is refused; `status_code` is what the vendor gets."""

    status_code: int = 400
    code: str = "rejected"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuthenticationFailed(DeliveryRejected):
    """Missing or wrong credentials, bad signature or timestamp out of tolerance."""

    status_code = 401
    code = "unauthenticated"


class BadPayload(DeliveryRejected):
    """The body is not JSON, not an object, or lacks the call's identity."""

    status_code = 400
    code = "bad_payload"


class PayloadTooLarge(DeliveryRejected):
    """The body exceeds `ingress.max_body_bytes`."""

    status_code = 413
    code = "too_large"


class BodyTimeout(DeliveryRejected):
    """The body did not arrive within `ingress.body_timeout_s`: 408, and the connection ends."""

    status_code = 408
    code = "timeout"


class AcceptUnavailable(CallhookError):
    """Redis could not confirm the dedupe mark and the enqueue: the vendor should retry."""


class UpstreamError(CallhookError):
    """An outbound request failed. `target` names the vendor API or sink."""

    def __init__(self, reason: str, *, target: str = "", status_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.target = target
        self.status_code = status_code


class RetryableError(UpstreamError):
    """Transient: retry with exponential backoff and jitter (or after `retry_after`)."""

    def __init__(
        self,
        reason: str,
        *,
        target: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason, target=target, status_code=status_code)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """429 from the upstream. `retry_after` is seconds, when the upstream said."""


class NotReadyYet(RetryableError):
    """404 right after an event: the vendor's API has not caught up with its webhook."""


class PermanentError(UpstreamError):
    """Retrying cannot help (auth, bad request, gone): dead-letter with the reason."""
