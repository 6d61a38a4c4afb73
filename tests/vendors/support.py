"""Helpers the vendor folders' tests share: a vendor's fixture files, expected events and
records, its simulated API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest

from callhook.errors import AuthenticationFailed, BadPayload
from callhook.events import Delivery, Event, EventType
from callhook.record import CallRecord
from callhook.vendors.base import SourceConfig, Vendor
from callhook.vendors.kit import MakeCall, VendorSimulatorState
from callhook.vendors.simulator import register
from tests.servers import ServerThread

#: the seconds a timestamped delivery stays valid, as the tests authenticate them
TOLERANCE = 300


@dataclass(frozen=True, slots=True)
class FixtureFiles:
    """A vendor's fixture folder (`kit.fixtures`): webhook bodies named
    `<vendor type>[__<variant>].json`, its API's answers under `api/`."""

    directory: Path

    def names(self) -> list[str]:
        """Every webhook fixture name (`<vendor type>[__<variant>]`)."""
        return sorted(path.stem for path in self.directory.glob("*.json"))

    def body(self, name: str) -> bytes:
        return (self.directory / f"{name}.json").read_bytes()

    def api(self, name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = orjson.loads(
            (self.directory / "api" / f"{name}.json").read_bytes()
        )
        return loaded


def record_json(record: CallRecord) -> dict[str, Any]:
    """The record's JSON without `updated_at` (the one field a test cannot know)."""
    dumped = record.to_json_dict()
    dumped.pop("updated_at")
    return dumped


def blank_record(source: str, vendor: str, call_id: str, **fields: Any) -> dict[str, Any]:
    """A record's JSON with nothing known but its identity, then `fields`."""
    record: dict[str, Any] = {
        "schema": "callhook.call/v1",
        "source": source,
        "vendor": vendor,
        "call_id": call_id,
        "status": "unknown",
        "vendor_status": None,
        "direction": None,
        "media": None,
        "initiator": None,
        "receiver": None,
        "participants": [],
        "created_at": None,
        "started_at": None,
        "answered_at": None,
        "ended_at": None,
        "duration_s": None,
        "recordings": [],
        "transcript": None,
        "summary": None,
        "voicemail": None,
        "last_event": None,
        "vendor_data": {},
        "enrichment": None,
        "observed_at": None,
        "revision": 0,
    }
    record.update(fields)
    return record


class ExpectedEvent(NamedTuple):
    """What a webhook fixture parses into, but for what its body and name tell."""

    key: str
    type: EventType | None
    call_id: str | None
    fetchable: bool
    occurred_at: str | None

    def of(self, fixture: str, body: bytes) -> Event:
        """The event of fixture `fixture` (`<vendor type>[__<variant>]`) with `body`."""
        return Event(
            event_key=self.key,
            vendor_type=fixture.split("__")[0],
            type=self.type,
            call_id=self.call_id,
            payload=orjson.loads(body),
            fetchable=self.fetchable,
            occurred_at=self.occurred_at,
        )


def bad_payload_reason(
    vendor: Vendor[Any], config: SourceConfig, delivery: Delivery, now: float
) -> str:
    """The reason `parse` refuses `delivery` with (once it is authenticated at `now`)."""
    vendor.authenticate(config, delivery, now=now, tolerance_s=TOLERANCE)
    with pytest.raises(BadPayload) as raised:
        vendor.parse(delivery)
    return raised.value.reason


def refusal(
    vendor: Vendor[Any],
    config: SourceConfig,
    delivery: Delivery,
    now: float,
    what: str = "the delivery",
) -> AuthenticationFailed:
    """The refusal `authenticate` must give `delivery` at `now` (`what` names the case)."""
    try:
        vendor.authenticate(config, delivery, now=now, tolerance_s=TOLERANCE)
    except AuthenticationFailed as refused:
        return refused
    raise AssertionError(f"{vendor.name}: {what} was accepted")


def simulated_api_fixtures(vendor: Vendor[Any], api_key: str) -> tuple[object, object]:
    """The `api_state` and `api_server` fixtures of a vendor folder's conftest: the state of
    the vendor's simulated API, which knows `api_key`, and the API on a loopback port."""

    @pytest.fixture
    def api_state() -> VendorSimulatorState:
        return VendorSimulatorState(api_key=api_key)

    @pytest.fixture
    def api_server(api_state: VendorSimulatorState) -> Iterator[ServerThread]:
        with ServerThread(vendor.kit.simulator_app(api_state)) as server:
            yield server

    return api_state, api_server


def window(start: float, end: float) -> tuple[datetime, datetime]:
    """A List Calls window from unix seconds."""
    return datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)


def calls_10_s_apart(state: VendorSimulatorState, make: MakeCall, first: float) -> list[str]:
    """250 calls the simulated API knows, made by `make` at `first` + 10 s * i, and five
    more just before and after them: the ids of the 250, oldest first."""
    inside = []
    for i in range(-5, 255):
        call = make(None, first + i * 10)
        register(state, call)
        if 0 <= i < 250:
            inside.append(call.call_id)
    return inside
