"""Reconcile: find the calls a vendor never delivered, through its List Calls API.

`Reconciler.run(source, since, until)` pages the source's List Calls over [since, until)
and decides, for each call listed:

* still ringing or in progress → skipped: a later run finds it finished;
* its stored record (callhook/store.py) already knows everything the listing tells (status,
  times, duration, parties, recordings...) → already delivered, nothing is enqueued;
* otherwise (no record: new; a record the listing adds to: updated) → fed to the enrich
  actor as the normalised event its status maps to, exactly as ingress feeds a webhook: the
  dedupe mark and the enqueue in one atomic step (service/accept.py), keyed
  `reconcile:<call>:<status>:<digest of what the listing tells>`, so two runs finding the
  same call feed it once and a call that changed since is fed again.

Every request goes through the source's fleet-wide rate limit (callhook/ratelimit.py), like
enrichment's. A page answered 429/5xx (or not answered) is retried where it failed, with
backoff honouring Retry-After, so the run resumes from that page; a page that keeps failing
ends the run with `Summary.error` set. So does a listing that goes on past
`[reconcile] max_pages` requests (a vendor that always answers "more"), and a vendor answer
slower than the vendor clients' deadline (callhook/http.py `VENDOR_DEADLINE_S`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import httpx
import orjson
import redis.asyncio
import redis.exceptions

from callhook import metrics
from callhook.config import Config
from callhook.errors import AcceptUnavailable, PermanentError, UpstreamError
from callhook.events import Event, EventType
from callhook.http import DEFAULT_LIMITS, DEFAULT_TIMEOUT, make_client, parse_retry_after
from callhook.journal.updates import JournalSettings
from callhook.queues import dedupe_key
from callhook.ratelimit import FleetRateLimiter, RateLimitedTransport
from callhook.record import CallRecord, CallStatus, LastEvent, iso_z, merge, utc_now_iso
from callhook.redis_connect import async_client
from callhook.replication import Replicas
from callhook.store import RecordStore
from callhook.vendors import VENDORS
from callhook.vendors.base import Fetched, Vendor
from service.accept import Acceptor
from service.accept import Outcome as Accepted
from workers.retrying import RetryPolicy

log = logging.getLogger("callhook.workers.reconcile")

#: the `vendor_type` of the events reconcile feeds; their payload is the listed call object
RECONCILE_VENDOR_TYPE = "reconcile"

#: the normalised event a listed call is fed as; a status not here is not final yet
EVENT_FOR_STATUS: Mapping[CallStatus, EventType] = MappingProxyType(
    {
        CallStatus.COMPLETED: EventType.COMPLETED,
        CallStatus.MISSED: EventType.MISSED,
        CallStatus.NO_ANSWER: EventType.MISSED,
        CallStatus.BUSY: EventType.MISSED,
        CallStatus.REJECTED: EventType.MISSED,
        CallStatus.CANCELED: EventType.MISSED,
        CallStatus.FAILED: EventType.FAILED,
    }
)

#: List Calls pages: 6 retries from 1 s doubling (about a minute in all), Retry-After first
PAGE_RETRY = RetryPolicy(max_attempts=6, base_s=1.0, cap_s=60.0)


class Outcome(StrEnum):
    """What became of one listed call (also the `outcome` label of reconcile_calls_total)."""

    NEW = "new"
    UPDATED = "updated"
    ALREADY_DELIVERED = "already_delivered"
    IN_PROGRESS = "in_progress"
    FAILED = "failed"


@dataclass
class Summary:
    """One run over one source's window: the counts, and the error that ended it early."""

    source: str
    since: datetime
    until: datetime
    dry_run: bool = False
    seen: int = 0
    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    #: HTTP requests made to the vendor (pages, and the retries among them)
    requests: int = 0
    retries: int = 0
    #: what the run could not cover (e.g. a phone number without known participants)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    @property
    def ok(self) -> bool:
        """The whole window was listed and every listed call handled."""
        return self.error is None and self.counts[Outcome.FAILED] == 0

    def __getitem__(self, outcome: Outcome) -> int:
        return self.counts[outcome]


#: a window's ends as text (the CLI's lines, the scheduler's saved window end)
iso = iso_z


#: the record fields a listing can tell; bookkeeping (revision, times observed, vendor_data)
#: is left out so the same call listed twice looks the same
_LISTED_FACTS = frozenset(
    {
        "status",
        "vendor_status",
        "direction",
        "media",
        "initiator",
        "receiver",
        "participants",
        "created_at",
        "started_at",
        "answered_at",
        "ended_at",
        "duration_s",
        "recordings",
        "transcript",
        "summary",
        "voicemail",
    }
)


def listed_facts(record: CallRecord) -> dict[str, Any]:
    return record.model_dump(mode="json", include=set(_LISTED_FACTS))


def tells_more(stored: CallRecord, listed: CallRecord) -> bool:
    """Whether merging the listed call into the stored record would change what it says."""
    return listed_facts(merge(stored, listed)) != listed_facts(stored)


def reconcile_event(record: CallRecord, event_type: EventType, listed: Mapping[str, Any]) -> Event:
    """The event that feeds a listed call to enrichment (fetched again there, by id)."""
    facts = orjson.dumps(listed_facts(record), option=orjson.OPT_SORT_KEYS)
    digest = hashlib.sha256(facts).hexdigest()[:16]
    return Event(
        event_key=f"reconcile:{record.call_id}:{record.status.value}:{digest}",
        vendor_type=RECONCILE_VENDOR_TYPE,
        type=event_type,
        call_id=record.call_id,
        payload=dict(listed),
        fetchable=True,
    )


def listed_observation(
    vendor: Vendor[Any], source: str, event: Event, received_at: str
) -> CallRecord:
    """What a reconcile event tells by itself: its payload is a List Calls item, which is a
    Get Call object, so it maps like one; `last_event` names the reconcile event."""
    if event.type is None or event.call_id is None:
        raise ValueError("listed_observation() needs an event about a call")
    record = vendor.record_from_api(source, Fetched(call=event.payload), received_at)
    last = LastEvent(type=event.type.value, key=event.event_key, received_at=received_at)
    return record.model_copy(update={"last_event": last})


class PageRetryTransport(httpx.AsyncBaseTransport):
    """Retries a GET answered 429/408/425/5xx, or not answered at all, in place.

    Sits above the rate-limited transport, so each retry waits for a fleet-wide slot too.
    After `policy.max_attempts` retries the last answer (or error) goes to the caller. The
    wrapped transport is not owned: closing this one leaves it open.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, policy: RetryPolicy) -> None:
        self.inner = inner
        self.policy = policy
        self.requests = 0
        self.retries = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            self.requests += 1
            retry_after: float | None = None
            try:
                response = await self.inner.handle_async_request(request)
            except httpx.TransportError as exc:
                if request.method != "GET" or self.policy.exhausted(attempt):
                    raise
                reason = type(exc).__name__
            else:
                status = response.status_code
                transient = status in (408, 425, 429) or status >= 500
                if not transient or request.method != "GET" or self.policy.exhausted(attempt):
                    return response
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                reason = f"HTTP {status}"
                await response.aclose()
            delay = self.policy.delay_s(attempt, retry_after)
            # the path only: queries can hold phone numbers
            log.info("%s %s: retrying in %.2fs", request.url.path, reason, delay)
            self.retries += 1
            attempt += 1
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        """The inner transport is shared; its owner closes it."""


class PageLimitReached(PermanentError):
    """One run asked the vendor for more than `[reconcile] max_pages` pages."""


class PageLimitTransport(httpx.AsyncBaseTransport):
    """Refuses the request after the `max_pages`-th of one run, with `PageLimitReached`.

    Sits above the page retries, so a page retried in place counts once. The wrapped
    transport is not owned: closing this one leaves it open.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, max_pages: int) -> None:
        self.inner = inner
        self.max_pages = max_pages
        self.pages = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.pages >= self.max_pages:
            raise PageLimitReached(
                f"stopped after {self.max_pages} pages ([reconcile] max_pages): the vendor "
                "kept answering that more follow",
                target=request.url.host,
            )
        self.pages += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        """The inner transport is shared; its owner closes it."""


Progress = Callable[[Summary], None]


class Reconciler:
    """Runs reconciliations for the sources of one config, on clients it owns."""

    def __init__(
        self,
        config: Config,
        client: redis.asyncio.Redis,
        transport: httpx.AsyncBaseTransport,
        *,
        page_retry: RetryPolicy = PAGE_RETRY,
        http_timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        namespace = config.redis.namespace
        self.config = config
        self.redis = client
        self.transport = transport
        self.page_retry = page_retry
        self.http_timeout = http_timeout
        self.store = RecordStore(client, namespace)
        self.limiter = FleetRateLimiter(client, namespace)
        self.acceptor = Acceptor(
            client,
            namespace=namespace,
            dedupe_ttl_s=config.redis.dedupe_ttl_s,
            timeout_s=config.redis.accept_timeout_s,
            journal=JournalSettings.from_config(config),
            replicas=Replicas.from_config(config.redis),
        )

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: Config,
        *,
        page_retry: RetryPolicy = PAGE_RETRY,
        http_timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> AsyncIterator[Reconciler]:
        """A reconciler with its own Redis client and connection pool, closed on exit."""
        client = async_client(
            config.redis, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30
        )
        transport = httpx.AsyncHTTPTransport(limits=DEFAULT_LIMITS)
        try:
            yield cls(config, client, transport, page_retry=page_retry, http_timeout=http_timeout)
        finally:
            await transport.aclose()
            await client.aclose()

    async def run(
        self,
        source: str,
        since: datetime,
        until: datetime,
        *,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> Summary:
        """List `source`'s calls created in [since, until) and feed the missing ones.

        Never raises for vendor or Redis trouble: the summary's `error` says what ended the
        run. With `dry_run`, counts what would be fed and enqueues nothing.
        """
        settings = self.config.sources[source]  # KeyError: the caller checks the name
        vendor = VENDORS[settings.vendor]
        summary = Summary(source, since, until, dry_run=dry_run)
        limited = RateLimitedTransport(
            self.transport, self.limiter, source, settings.rate_limit_per_s
        )
        pages = PageRetryTransport(limited, self.page_retry)
        capped = PageLimitTransport(pages, self.config.reconcile.max_pages)
        context = {"source": source, "since": since.isoformat(), "until": until.isoformat()}
        async with make_client(timeout=self.http_timeout, transport=capped) as http:
            client = vendor.client(settings, http)
            try:
                async for listed in client.list_calls(since, until):
                    outcome = await self._consider(vendor, source, listed, dry_run=dry_run)
                    summary.seen += 1
                    summary.counts[outcome] += 1
                    if not dry_run:
                        metrics.reconcile_calls_total.labels(source, "seen").inc()
                        metrics.reconcile_calls_total.labels(source, outcome.value).inc()
                    if progress is not None:
                        progress(summary)
            except UpstreamError as exc:
                summary.error = f"List Calls failed after {summary.seen} calls: {exc.reason}"
            except AcceptUnavailable as exc:
                summary.error = f"could not feed a call to enrichment: {exc}"
            except (redis.exceptions.RedisError, OSError) as exc:
                summary.error = f"Redis failed: {type(exc).__name__}: {exc}"
            except Exception as exc:  # a bug: this run ends, the scheduler and others go on
                log.exception("reconcile failed unexpectedly", extra=context)
                summary.error = f"unexpected {type(exc).__name__}: {exc}"
            summary.notes.extend(_coverage_notes(client))
        summary.requests, summary.retries = pages.requests, pages.retries
        summary.finished_at = time.time()
        counts = {outcome.value: n for outcome, n in summary.counts.items()}
        if summary.error is None:
            log.info("reconciled %d calls", summary.seen, extra={**context, **counts})
        else:
            log.error("reconcile ended early: %s", summary.error, extra={**context, **counts})
        return summary

    async def _consider(
        self, vendor: Vendor[Any], source: str, listed: Mapping[str, Any], *, dry_run: bool
    ) -> Outcome:
        """Decide about one listed call and, unless `dry_run`, feed it if it is missing."""
        try:
            record = vendor.record_from_api(source, Fetched(call=listed), utc_now_iso())
        except ValueError as exc:  # pydantic's ValidationError is one too
            log.warning("a listed call could not be read: %s", exc, extra={"source": source})
            return Outcome.FAILED
        event_type = EVENT_FOR_STATUS.get(record.status)
        if event_type is None:
            return Outcome.IN_PROGRESS
        stored = await self.store.get(source, record.call_id)
        if stored is not None and not tells_more(stored, record):
            return Outcome.ALREADY_DELIVERED
        outcome = Outcome.NEW if stored is None else Outcome.UPDATED
        event = reconcile_event(record, event_type, listed)
        if dry_run:
            mark = dedupe_key(self.acceptor.namespace, source, event.event_key)
            return Outcome.ALREADY_DELIVERED if await self.redis.exists(mark) else outcome
        accepted = await self.acceptor.accept(
            source, event, vendor=vendor.name, origin=RECONCILE_VENDOR_TYPE
        )
        if accepted is Accepted.DUPLICATE:
            # fed by an earlier run; enrichment has not stored it yet
            return Outcome.ALREADY_DELIVERED
        log.info(
            "fed a %s call to enrichment",
            outcome.value,
            extra={"source": source, "call_id": record.call_id, "event_key": event.event_key},
        )
        return outcome


@runtime_checkable
class ReportsCoverage(Protocol):
    """A vendor client that can tell, after `list_calls`, what it could not list (Quo: a
    workspace number with no known counterparty cannot be listed at all)."""

    coverage_notes: Sequence[str]


def _coverage_notes(client: object) -> list[str]:
    return (
        [str(note) for note in client.coverage_notes] if isinstance(client, ReportsCoverage) else []
    )
