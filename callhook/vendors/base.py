"""What a vendor provides to Callhook: one `Vendor` declaration per vendor folder, one line
in the registry (`callhook.vendors.VENDORS`).

A vendor is pure knowledge of one calling platform: how its deliveries are authenticated
and parsed, how a webhook payload and its Get Call API answer map onto the call record,
and how its APIs are called. What imitates the vendor (for sandbox mode, `send-test-event`
and the tests) is its kit, `callhook.vendors.kit.VendorKit`, declared with it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from callhook.events import Delivery, Event, EventType
from callhook.record import CallRecord
from callhook.vendors.kit import VendorKit

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
ConfigT_contra = TypeVar("ConfigT_contra", bound=SourceConfig, contravariant=True)


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


class Authenticate(Protocol[ConfigT_contra]):
    def __call__(
        self, config: ConfigT_contra, delivery: Delivery, *, now: float, tolerance_s: int
    ) -> None: ...


class MakeClient(Protocol[ConfigT_contra]):
    """A client's constructor; `deadline_s` bounds one fetch (`callhook.http`'s default)."""

    def __call__(
        self, config: ConfigT_contra, http: httpx.AsyncClient, *, deadline_s: float = ...
    ) -> VendorClient: ...


@dataclass(frozen=True, slots=True)
class Vendor(Generic[ConfigT]):
    """One calling platform, declared once in its folder's `__init__.py`."""

    name: str
    config_model: type[ConfigT]
    #: raise `AuthenticationFailed(reason)` unless the raw delivery is genuine; pure (`now`
    #: is unix seconds), constant-time compares
    authenticate: Authenticate[ConfigT]
    #: an authenticated delivery as an Event; raises `BadPayload` if unusable
    parse: Callable[[Delivery], Event]
    #: (source, event, received_at) → the partial call record the webhook payload tells
    record_from_event: Callable[[str, Event, str], CallRecord]
    #: (source, fetched, observed_at) → the call record the vendor API's answer tells
    record_from_api: Callable[[str, Fetched, str], CallRecord]
    #: a client for the source's API (Get Call, List Calls) on the process's httpx client
    client: MakeClient[ConfigT]
    #: what imitates this vendor: example config, calls, deliveries, API simulator
    kit: VendorKit[ConfigT]
