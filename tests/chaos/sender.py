"""A vendor-like sender: realistic signed deliveries (each vendor's own simulator), a call's
deliveries posted in order, calls started at a steady rate, and every delivery retried on
503 and on connection errors or timeouts, with the same bytes, until it gets a 200. Given
several ingress URLs (a fleet behind a load balancer), it posts round-robin: each delivery
to the next URL, its concurrent copies and its retries each to the one after."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from bench.loadgen import sources_by_vendor
from callhook.config import Config
from callhook.events import Delivery
from callhook.vendors import VENDORS
from callhook.vendors.kit import VendorSimulatorState
from callhook.vendors.simulator import register

#: a delivery is given up after this many tries (a scenario then fails: sent != accepted)
MAX_TRIES = 400


@dataclass
class Sent:
    """One delivery and what the ingress answered to it in the end."""

    source: str
    call_id: str
    event_key: str
    type: str | None
    delivery: Delivery
    status: int | None = None
    answer: str | None = None
    unavailable: int = 0
    errors: int = 0


@dataclass
class SendReport:
    sent: list[Sent] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    #: (ingress URL, its 200's `status`: accepted, duplicate...) of every post
    answers_by_url: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def accepted(self) -> list[Sent]:
        return [s for s in self.sent if s.status == 200]

    def figures(self) -> dict[str, int]:
        return {
            "sent": len(self.sent),
            "accepted": len(self.accepted),
            "answered_503": sum(s.unavailable for s in self.sent),
            "connection_errors": sum(s.errors for s in self.sent),
            "duplicates_answered": self.answers["duplicate"],
        }


class Sender:
    """Posts `calls` calls to the ingress at `calls_per_s`, at most `concurrency` calls at
    once; each delivery is posted `copies` times concurrently (a vendor's parallel retry).
    Runs on a thread of its own so the scenario can break things meanwhile."""

    def __init__(
        self,
        config: Config,
        ingress_url: str | Sequence[str],
        states: dict[str, VendorSimulatorState],
        *,
        calls: int,
        calls_per_s: float,
        concurrency: int = 16,
        copies: int = 1,
        deadline_s: float = 240.0,
    ) -> None:
        self.config = config
        self.urls = [ingress_url] if isinstance(ingress_url, str) else list(ingress_url)
        self.states = states
        self.calls = calls
        self.calls_per_s = calls_per_s
        self.concurrency = concurrency
        self.copies = copies
        self.deadline = time.monotonic() + deadline_s
        self.report = SendReport()
        self.started_calls = 0
        self._turn = 0
        #: monotonic time the last delivery got its final answer
        self.finished_at = 0.0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> Sender:
        self._thread.start()
        return self

    def done(self) -> bool:
        return self.finished_at > 0

    def join(self, timeout: float) -> SendReport:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the sender was still posting after {timeout}s")
        return self.report

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency * self.copies)
        gate = asyncio.Semaphore(self.concurrency)
        sources = sources_by_vendor(self.config)
        async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:
            tasks = []
            started = time.monotonic()
            for index in range(self.calls):
                await asyncio.sleep(max(0.0, started + index / self.calls_per_s - time.monotonic()))
                await gate.acquire()
                self.started_calls += 1
                call = self._call(sources[index % len(sources)])
                tasks.append(asyncio.create_task(self._post_call(client, call, gate)))
            await asyncio.gather(*tasks)
        self.finished_at = time.monotonic()

    def _call(self, source: str) -> list[Sent]:
        settings = self.config.sources[source]
        vendor = VENDORS[settings.vendor]
        simulated = vendor.kit.simulated_call(None, now=time.time())
        register(self.states[vendor.name], simulated)
        deliveries = []
        for vendor_type in vendor.kit.call_sequence:
            delivery = vendor.kit.simulate_delivery(
                settings, vendor_type, simulated, now=time.time()
            )
            event = vendor.parse(delivery)
            deliveries.append(
                Sent(source, event.call_id or "", event.event_key, event.type, delivery)
            )
        self.report.sent += deliveries
        return deliveries

    async def _post_call(
        self, client: httpx.AsyncClient, call: list[Sent], gate: asyncio.Semaphore
    ) -> None:
        try:
            for sent in call:
                turn, self._turn = self._turn, self._turn + 1
                copies = (self._post(client, sent, turn + copy) for copy in range(self.copies))
                await asyncio.gather(*copies)
        finally:
            gate.release()

    async def _post(self, client: httpx.AsyncClient, sent: Sent, turn: int) -> None:
        """Post until a 200 (or another final answer): the first try to URL number `turn`,
        each retry to the next one round-robin."""
        pause = 0.2
        for tries in range(MAX_TRIES):
            if time.monotonic() > self.deadline:
                return
            url = self.urls[(turn + tries) % len(self.urls)]
            try:
                response = await client.post(
                    f"{url}/webhooks/{sent.source}",
                    content=sent.delivery.body,
                    headers=dict(sent.delivery.headers),
                )
            except httpx.TransportError:
                sent.errors += 1
            else:
                if response.status_code == 200:
                    sent.status = 200
                    answer = str(response.json().get("status"))
                    sent.answer = sent.answer if sent.answer == "accepted" else answer
                    self.report.answers[answer] += 1
                    self.report.answers_by_url[(url, answer)] += 1
                    return
                if response.status_code != 503:
                    sent.status = response.status_code  # a real vendor would give up here
                    return
                sent.unavailable += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
