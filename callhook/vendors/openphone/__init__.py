"""OpenPhone / Quo: signed webhooks in two generations, Get Call (+ extras) and List Calls.

The class is thin: each method delegates to the module that owns the job
(`webhook`, `mapping`, `client`, `simulate`).
"""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp

from callhook.events import Delivery, Event
from callhook.record import CallRecord
from callhook.vendors.base import Fetched, SimulatedCall, Vendor, VendorSimulatorState
from callhook.vendors.openphone import mapping, simulate, webhook
from callhook.vendors.openphone.client import OpenPhoneClient
from callhook.vendors.openphone.config import OpenPhoneSource

__all__ = ["OpenPhone", "OpenPhoneClient", "OpenPhoneSource"]


class OpenPhone(Vendor[OpenPhoneSource]):
    """OpenPhone (now Quo): call webhooks and the public REST API."""

    name = "openphone"
    config_model = OpenPhoneSource
    simulated_types = simulate.SIMULATED_TYPES

    def authenticate(
        self, config: OpenPhoneSource, delivery: Delivery, *, now: float, tolerance_s: int
    ) -> None:
        webhook.authenticate(config, delivery, now=now, tolerance_s=tolerance_s)

    def parse(self, delivery: Delivery) -> Event:
        return webhook.parse(delivery)

    def record_from_event(self, source: str, event: Event, received_at: str) -> CallRecord:
        return mapping.record_from_event(source, event, received_at)

    def record_from_api(self, source: str, fetched: Fetched, observed_at: str) -> CallRecord:
        return mapping.record_from_api(source, fetched, observed_at)

    def client(self, config: OpenPhoneSource, http: httpx.AsyncClient) -> OpenPhoneClient:
        return OpenPhoneClient(config, http)

    def simulated_call(self, call_id: str | None, *, now: float) -> SimulatedCall:
        return simulate.simulated_call(call_id, now)

    def simulate_delivery(
        self, config: OpenPhoneSource, vendor_type: str, call: SimulatedCall, *, now: float
    ) -> Delivery:
        return simulate.simulate_delivery(config, vendor_type, call, now)

    def simulator_app(self, state: VendorSimulatorState) -> ASGIApp:
        return simulate.simulator_app(state)
