"""Reading the journal: calls newest first with filters, one call's journal, the counters.

Listing walks the most selective index (failed, status, source, or all) newest first and
checks the other filters against each call's summary, so a page costs a bounded number of
round trips whatever the filters; a page that scanned `SCAN_LIMIT` calls without filling
up ends early with a cursor to go on from.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis.asyncio

from callhook.journal import call_member, prefix
from callhook.journal.updates import JournalSettings

#: calls examined per index read
BATCH = 100
#: calls one page examines at most before it returns what it found and a cursor
SCAN_LIMIT = 2000
#: entries of a call read at most (the cap per call bounds it anyway)
MAX_ENTRIES = 10_000

_COUNTS = ("events", "dups", "failures", "dead", "trimmed", "recordings", "revision")


class BadCursor(ValueError):
    """A `cursor` that this reader did not hand out."""


@dataclass(frozen=True, slots=True)
class CallSummary:
    """A call at a glance: what the list of calls shows."""

    source: str
    call_id: str
    first_at_ms: int
    last_at_ms: int
    status: str | None
    fields: Mapping[str, str]
    counts: Mapping[str, int]
    enrich: Mapping[str, Any] | None
    sinks: Mapping[str, Mapping[str, Any]]
    duplicates: Mapping[str, int]

    def get(self, name: str) -> str | None:
        return self.fields.get(name)

    @property
    def duration_s(self) -> float | None:
        value = self.fields.get("duration_s")
        try:
            return None if value is None else float(value)
        except ValueError:
            return None

    @property
    def has_failures(self) -> bool:
        return self.counts.get("failures", 0) > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "call_id": self.call_id,
            "first_seen_ms": self.first_at_ms,
            "last_activity_ms": self.last_at_ms,
            "status": self.status,
            "vendor": self.get("vendor"),
            "direction": self.get("direction"),
            "media": self.get("media"),
            "initiator": self.get("initiator"),
            "receiver": self.get("receiver"),
            "duration_s": self.duration_s,
            "created_at": self.get("created_at"),
            "events": self.counts.get("events", 0),
            "duplicates": self.counts.get("dups", 0),
            "failures": self.counts.get("failures", 0),
            "dead_letters": self.counts.get("dead", 0),
            "recordings": self.counts.get("recordings", 0),
            "enrich": self.enrich,
            "sinks": dict(self.sinks),
        }


def decode_summary(raw: Mapping[bytes, bytes]) -> CallSummary | None:
    if not raw or b"first_at" not in raw:
        return None
    text = {key.decode(): value.decode(errors="replace") for key, value in raw.items()}
    sinks, duplicates, fields = {}, {}, {}
    counts: dict[str, int] = {}
    for name, value in text.items():
        if name.startswith("sink:"):
            sinks[name.removeprefix("sink:")] = _json_object(value)
        elif name.startswith("dup:"):
            duplicates[name.removeprefix("dup:")] = _int(value)
        elif name in _COUNTS:
            counts[name] = _int(value)
        else:
            fields[name] = value
    return CallSummary(
        source=text.get("source", ""),
        call_id=text.get("call_id", ""),
        first_at_ms=_int(text["first_at"]),
        last_at_ms=_int(text.get("last_at", text["first_at"])),
        status=text.get("status"),
        fields=fields,
        counts=counts,
        enrich=_json_object(text["enrich"]) if "enrich" in text else None,
        sinks=dict(sorted(sinks.items())),
        duplicates=duplicates,
    )


@dataclass(frozen=True, slots=True)
class CallFilter:
    source: str | None = None
    status: str | None = None
    failed: bool | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def index(self) -> str:
        """The index to walk: the most selective one a filter names."""
        if self.failed:
            return "failed"
        if self.status:
            return f"status:{self.status}"
        if self.source:
            return f"source:{self.source}"
        return "all"

    def admits(self, summary: CallSummary) -> bool:
        if self.source and summary.source != self.source:
            return False
        if self.status and summary.status != self.status:
            return False
        return self.failed is None or summary.has_failures == self.failed


@dataclass(frozen=True, slots=True)
class Page:
    calls: Sequence[CallSummary]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class CallJournal:
    summary: CallSummary
    entries: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Rejections:
    counts: Mapping[str, int]
    last: Sequence[Mapping[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def encode_cursor(score: float, member: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([score, member])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        score, member = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise BadCursor("not a cursor this API handed out") from None
    if not isinstance(score, int | float) or not isinstance(member, str):
        raise BadCursor("not a cursor this API handed out")
    return float(score), member


class JournalReader:
    def __init__(self, client: redis.asyncio.Redis, settings: JournalSettings) -> None:
        self.client = client
        self.settings = settings
        self.prefix = prefix(settings.namespace)

    def _summary_key(self, source: str, call_id: str) -> str:
        return f"{self.prefix}:summary:{call_member(source, call_id)}"

    async def summary(self, source: str, call_id: str) -> CallSummary | None:
        raw = await self.client.hgetall(self._summary_key(source, call_id))
        return decode_summary(cast(dict[bytes, bytes], raw))

    async def call(self, source: str, call_id: str) -> CallJournal | None:
        """The call's summary and its journal entries, oldest first (None: not known)."""
        member = call_member(source, call_id)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(f"{self.prefix}:summary:{member}")
            pipe.lrange(f"{self.prefix}:call:{member}", 0, MAX_ENTRIES - 1)
            raw_summary, raw_entries = await pipe.execute()
        summary = decode_summary(raw_summary)
        if summary is None:
            return None
        return CallJournal(summary, [_json_object(entry) for entry in raw_entries])

    async def calls(self, where: CallFilter, *, limit: int = 50, cursor: str | None = None) -> Page:
        """Calls newest first (by when they were first seen) that `where` admits."""
        index = f"{self.prefix}:idx:{where.index()}"
        now_ms = int(await self._now_ms())
        await self.client.zremrangebyscore(index, "-inf", f"({now_ms - self.settings.ttl_s * 1000}")
        top: float | str = "+inf" if where.until_ms is None else where.until_ms
        bottom: float | str = "-inf" if where.since_ms is None else where.since_ms
        after: tuple[float, str] | None = None
        if cursor:
            after = decode_cursor(cursor)
            top = after[0] if top == "+inf" else min(float(top), after[0])
        found: list[CallSummary] = []
        offset = scanned = 0
        last_seen: tuple[float, str] | None = None
        while scanned < SCAN_LIMIT:
            batch = cast(
                list[tuple[bytes, float]],
                await self.client.zrevrangebyscore(
                    index, top, bottom, start=offset, num=BATCH, withscores=True
                ),
            )
            if not batch:
                return Page(found, None)
            offset += len(batch)
            members = [
                (member.decode(), score)
                for member, score in batch
                if after is None or score != after[0] or member.decode() < after[1]
            ]
            summaries = await self._summaries([member for member, _ in members])
            for (member, score), summary in zip(members, summaries, strict=True):
                scanned += 1
                last_seen = (score, member)
                if summary is not None and where.admits(summary):
                    found.append(summary)
                    if len(found) == limit:
                        return Page(found, encode_cursor(score, member))
            if len(batch) < BATCH:
                return Page(found, None)
        assert last_seen is not None
        return Page(found, encode_cursor(*last_seen))

    async def find(self, query: str, sources: Sequence[str]) -> list[CallSummary]:
        """Calls whose id is `query`, or that an event keyed `query` was about."""
        async with self.client.pipeline(transaction=False) as pipe:
            for source in sources:
                pipe.get(f"{self.prefix}:event:{source}:{query}")
            by_event = await pipe.execute()
        wanted = {(source, query) for source in sources}
        wanted |= {
            (source, call_id.decode())
            for source, call_id in zip(sources, by_event, strict=True)
            if call_id is not None
        }
        members = sorted(call_member(source, call_id) for source, call_id in wanted)
        return [summary for summary in await self._summaries(members) if summary is not None]

    async def _summaries(self, members: Sequence[str]) -> list[CallSummary | None]:
        if not members:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.hgetall(f"{self.prefix}:summary:{member}")
            raws = await pipe.execute()
        return [decode_summary(raw) for raw in raws]

    async def minutes(self, count: int = 60) -> list[tuple[int, dict[str, int]]]:
        """The per-minute counters of the last `count` minutes, oldest first, as (minute
        start in ms, counters); the current minute is the last."""
        now_minute = int(await self._now_ms()) // 60000
        keys = range(now_minute - count + 1, now_minute + 1)
        async with self.client.pipeline(transaction=False) as pipe:
            for minute in keys:
                pipe.hgetall(f"{self.prefix}:stats:{minute}")
            raws = await pipe.execute()
        return [
            (minute * 60000, {k.decode(): _int(v.decode()) for k, v in raw.items()})
            for minute, raw in zip(keys, raws, strict=True)
        ]

    async def health(self) -> dict[str, str]:
        raw = cast(dict[bytes, bytes], await self.client.hgetall(f"{self.prefix}:health"))
        return {key.decode(): value.decode(errors="replace") for key, value in raw.items()}

    async def rejections(self, sources: Sequence[str]) -> dict[str, Rejections]:
        async with self.client.pipeline(transaction=False) as pipe:
            for source in sources:
                pipe.hgetall(f"{self.prefix}:rejected:{source}")
                pipe.lrange(f"{self.prefix}:rejected:{source}:last", 0, 99)
            raws = await pipe.execute()
        result = {}
        for position, source in enumerate(sources):
            counts, last = raws[2 * position], raws[2 * position + 1]
            result[source] = Rejections(
                counts={k.decode(): _int(v.decode()) for k, v in counts.items()},
                last=[_json_object(item) for item in last],
            )
        return result

    async def _now_ms(self) -> float:
        """The Redis server's clock, the one the rest of the fleet's writes agree on."""
        seconds, micros = await self.client.time()
        return seconds * 1000 + micros / 1000


def _int(value: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        return 0


def _json_object(value: str | bytes) -> dict[str, Any]:
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    return decoded if isinstance(decoded, dict) else {}
