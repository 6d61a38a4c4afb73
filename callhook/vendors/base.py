"""What a vendor provides to Callhook. One subclass per vendor, one line in the registry.

A vendor is pure knowledge of one calling platform: how its deliveries are authenticated
and parsed, how a webhook payload and its Get Call API answer map onto the call record,
how its APIs are called, and how to simulate it (signed deliveries for `send-test-event`
and the tests; an API server for the tests and sandbox mode).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.types import ASGIApp

from callhook.events import Delivery, Event, EventType
from callhook.record import CallRecord

#: the least key material a webhook secret may have: a shorter key can be guessed
MIN_SECRET_BYTES = 16


def strong_secret(value: SecretStr | None) -> SecretStr | None:
    """A validator body: `value` unless it is non-empty and shorter than MIN_SECRET_BYTES
    bytes (an empty secret is allowed: it switches that webhook off)."""
    if value is not None and 0 < len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"too short: a webhook secret needs at least {MIN_SECRET_BYTES} bytes "
            "(e.g. openssl rand -base64 32)"
        )
    return value


class SourceConfig(BaseModel):
    """Settings every `[sources.NAME]` table has; vendors subclass it with their secrets."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    vendor: str
    api_key: SecretStr | None = None
    api_base_url: str | None = None
    #: vendor API requests/s, fleet-wide; each vendor sets its documented limit as default
    rate_limit_per_s: float = Field(default=10.0, gt=0)

    def webhook_enabled(self) -> bool:
        """False when every webhook credential is empty: the source then answers 404."""
        raise NotImplementedError


ConfigT = TypeVar("ConfigT", bound=SourceConfig)


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a vendor client brought back for one call.

    `call` is the Get Call object (unwrapped); `extras` holds what else the event type
    called for (recordings, summary, transcript, voicemail), keyed by kind; `notes` records
    what could not be had and why (e.g. `{"summary": "forbidden: plan without summaries"}`).
    """

    call: Mapping[str, Any]
    extras: Mapping[str, Any] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)


class VendorClient(ABC):
    """The vendor's REST API, on an httpx client the worker process owns.

    Errors are raised from `callhook.errors`: `NotReadyYet` (404 right after an event),
    `RateLimited` (429), `RetryableError` (5xx, timeouts), `PermanentError` (401/403...).
    """

    @abstractmethod
    async def fetch(self, call_id: str, event_type: EventType) -> Fetched:
        """Get Call, plus the extras the event type calls for."""

    @abstractmethod
    def list_calls(self, since: datetime, until: datetime) -> AsyncIterator[Mapping[str, Any]]:
        """Every call created in [since, until), as Get Call objects, paging as needed."""


class Vendor(ABC, Generic[ConfigT]):
    """One calling platform. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    config_model: ClassVar[type[SourceConfig]]
    #: every vendor event name `simulate_delivery` can build (one fixture per name in tests)
    simulated_types: ClassVar[tuple[str, ...]]

    @abstractmethod
    def authenticate(
        self, config: ConfigT, delivery: Delivery, *, now: float, tolerance_s: int
    ) -> None:
        """Raise `AuthenticationFailed(reason)` unless the raw delivery is genuine.

        Pure: depends only on its arguments (`now` is unix seconds). Constant-time compares.
        """

    @abstractmethod
    def parse(self, delivery: Delivery) -> Event:
        """Turn an authenticated delivery into an Event; raise `BadPayload` if unusable."""

    @abstractmethod
    def record_from_event(self, source: str, event: Event, received_at: str) -> CallRecord:
        """The partial call record the webhook payload alone tells."""

    @abstractmethod
    def record_from_api(self, source: str, fetched: Fetched, observed_at: str) -> CallRecord:
        """The call record the vendor API's answer tells."""

    @abstractmethod
    def client(self, config: ConfigT, http: httpx.AsyncClient) -> VendorClient:
        """A client for this source's API on the given (process-wide) httpx client."""

    @abstractmethod
    def simulated_call(self, call_id: str | None, *, now: float) -> SimulatedCall:
        """A realistic call as the vendor's API returns it (a new random id when None)."""

    @abstractmethod
    def simulate_delivery(
        self, config: ConfigT, vendor_type: str, call: SimulatedCall, *, now: float
    ) -> Delivery:
        """A realistic delivery of `vendor_type` about `call`, authenticated exactly as the
        vendor does (signature, Basic or Bearer from `config`, timestamped `now`)."""

    @abstractmethod
    def simulator_app(self, state: VendorSimulatorState) -> ASGIApp:
        """An ASGI app answering this vendor's API like the real one, from `state`."""


@dataclass(frozen=True, slots=True)
class SimulatedCall:
    """A call a simulated vendor knows: the Get Call object and the extras' API objects."""

    call_id: str
    call: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Faults:
    """Failures a simulated vendor API injects, for tests and chaos runs."""

    #: answer 404 this many times per call id before the call "exists"
    not_found_first: int = 0
    #: answer 429 to this many requests (then serve normally); `retry_after` header or none
    rate_limited: int = 0
    retry_after: float | None = None
    #: answer 500 to this many requests
    server_errors: int = 0
    #: answer 401 to every request (wrong API key)
    unauthorized: bool = False
    #: seconds to wait before answering each request
    latency_s: float = 0.0


@dataclass
class VendorSimulatorState:
    """The calls a simulated vendor API knows and the faults it injects.

    `calls` maps call id → the Get Call object as the vendor returns it (unwrapped);
    `extras` maps call id → kind ("recordings", "summary", ...) → that API's object.
    `requests` logs every request as (method, path) so tests can count vendor calls.
    """

    api_key: str
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    requests: list[tuple[str, str]] = field(default_factory=list)
    not_found_served: dict[str, int] = field(default_factory=dict)
    #: sandbox mode: an unknown call id is answered with a new `simulated_call` for it
    autocreate: bool = False
