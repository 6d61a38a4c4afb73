"""Diga (AI voice agents): Bearer-authenticated "Call Finished" workflow posts, Get Call /
messages / List Calls enrichment.

The class is thin: each method delegates to the module that owns the job
(`webhook`, `mapping`, `client`, `simulate`).
"""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp

from callhook.events import Delivery, Event
from callhook.record import CallRecord
from callhook.vendors.base import Fetched, SimulatedCall, Vendor, VendorSimulatorState
from callhook.vendors.diga import mapping, simulate, webhook
from callhook.vendors.diga.client import DigaClient
from callhook.vendors.diga.config import DigaSource

__all__ = ["Diga", "DigaClient", "DigaSource"]


class Diga(Vendor[DigaSource]):
    """Diga's post-call workflow deliveries and its calls API."""

    name = "diga"
    config_model = DigaSource
    simulated_types = simulate.SIMULATED_TYPES

    def authenticate(
        self, config: DigaSource, delivery: Delivery, *, now: float, tolerance_s: int
    ) -> None:
        webhook.authenticate(config, delivery, now=now, tolerance_s=tolerance_s)

    def parse(self, delivery: Delivery) -> Event:
        return webhook.parse(delivery)

    def record_from_event(self, source: str, event: Event, received_at: str) -> CallRecord:
        return mapping.record_from_event(source, event, received_at)

    def record_from_api(self, source: str, fetched: Fetched, observed_at: str) -> CallRecord:
        return mapping.record_from_api(source, fetched, observed_at)

    def client(self, config: DigaSource, http: httpx.AsyncClient) -> DigaClient:
        return DigaClient(config, http)

    def simulated_call(self, call_id: str | None, *, now: float) -> SimulatedCall:
        return simulate.simulated_call(call_id, now)

    def simulate_delivery(
        self, config: DigaSource, vendor_type: str, call: SimulatedCall, *, now: float
    ) -> Delivery:
        return simulate.simulate_delivery(config, vendor_type, call, now)

    def simulator_app(self, state: VendorSimulatorState) -> ASGIApp:
        return simulate.simulator_app(state)
