"""The sink interface and the settings every `[[sinks]]` table shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

import httpx
import redis.asyncio
from pydantic import BaseModel, ConfigDict, Field

from callhook.events import EventType
from callhook.record import CallStatus


class When(BaseModel):
    """Conditions on the record; every one given must hold (docs/configuration.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vendor: tuple[str, ...] | None = None
    source: tuple[str, ...] | None = None
    status: tuple[CallStatus, ...] | None = None
    direction: tuple[str, ...] | None = None
    media: tuple[str, ...] | None = None
    has_recording: bool | None = None
    min_duration_s: float | None = Field(default=None, ge=0)


class SinkConfig(BaseModel):
    """Settings every sink has; each sink type subclasses it with its own."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    type: str
    #: normalised event types that trigger this sink; None = all
    events: tuple[EventType, ...] | None = None
    when: When = When()
    #: seconds for one write before it counts as a transient failure
    timeout_s: float = Field(default=10.0, gt=0)


ConfigT = TypeVar("ConfigT", bound=SinkConfig)


@dataclass(frozen=True, slots=True)
class SinkResources:
    """What a worker process lends a sink: an httpx client (with a connection pool of the
    sink's own), the process's Redis client, the key namespace under which sinks may keep
    idempotency marks, and `[recordings] allow_private_networks` (for sinks that download
    recordings)."""

    http: httpx.AsyncClient
    redis: redis.asyncio.Redis
    namespace: str
    allow_private_networks: bool = False


@dataclass(frozen=True, slots=True)
class Trigger:
    """The event that caused this delivery; sinks key their idempotency on it."""

    event_key: str
    event_type: EventType
    received_at: str
    payload: dict[str, Any] | None = None
    #: a newer delivery of the same call to the same sink is already enqueued: a sink that
    #: `coalesces` may leave the call's latest state to it (see `Sink.coalesces`)
    superseded: bool = False


class WriteResult(StrEnum):
    """What one `Sink.write` did (the journal shows it as the attempt's outcome)."""

    #: the record was stored or sent now
    WRITTEN = "ok"
    #: nothing was sent: an earlier attempt had already sent this (sinks/once.py)
    ALREADY_DONE = "skipped"
    #: nothing was written: a newer delivery of the call writes its latest state
    SUPERSEDED = "superseded"


class Sink(ABC, Generic[ConfigT]):
    """A destination for call records. `write` must be idempotent per (call, trigger type).

    Errors: raise `RetryableError` (or `RateLimited`) for transient failures and
    `PermanentError` for ones retrying cannot fix; the deliver actor does the rest.
    """

    type_name: ClassVar[str]
    config_model: ClassVar[type[SinkConfig]]
    #: the sink keeps each call's latest state (the s3 object, the `calls` row): when
    #: deliveries queue up, a delivery that a newer one of the same call already follows
    #: (`Trigger.superseded`) may skip that write, and the newest state is written once
    coalesces: ClassVar[bool] = False

    def __init__(self, config: ConfigT, resources: SinkResources) -> None:
        self.config = config
        self.resources = resources

    async def start(self) -> None:
        """Connect, migrate, validate reachability. Called before the first write, and
        again after a failure until it succeeds (keep what can be kept across attempts)."""

    async def close(self) -> None:
        """Release connections."""

    @abstractmethod
    async def write(self, record: dict[str, Any], trigger: Trigger) -> WriteResult:
        """Store or send the record (its JSON wire shape)."""
