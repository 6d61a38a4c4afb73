"""What the JSON API and the console show, assembled once as plain JSON-ready data.

From the journal (callhook/journal/), the record store, the dead letters, the queues and
the limiter's keys in Redis, and the config. The API returns these dicts as they are; the
console's templates render the same dicts, so both always say the same thing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from callhook.actions import Actions
from callhook.config import Config, redacted
from callhook.dead_letters import DeadLetter, Dropped
from callhook.journal.reader import CallFilter, CallSummary, JournalReader
from callhook.journal.tally import UNKNOWN_SOURCE
from callhook.journal.updates import LATENCY_BUCKETS_MS, JournalSettings, iso_ms
from callhook.queues import QUEUES, STAGES, dlq_index_key, queue_key
from callhook.ratelimit import FleetRateLimiter

#: minutes the overview covers
WINDOW_MINUTES = 60
#: Dramatiq keeps a queue's delayed messages (retries waiting out their backoff) here
DELAYED_SUFFIX = ".DQ"


@dataclass
class Insight:
    """Everything the API and the console read, for one ingress process."""

    config: Config
    client: redis.asyncio.Redis

    def __post_init__(self) -> None:
        self.journal = JournalReader(self.client, JournalSettings.from_config(self.config))
        self.actions = Actions(self.config, self.client)
        self.limiter = FleetRateLimiter(self.client, self.config.redis.namespace)

    @property
    def sink_names(self) -> list[str]:
        return [sink.name for sink in self.config.sinks]

    async def calls(
        self,
        where: CallFilter,
        *,
        cursor: str | None = None,
        limit: int = 50,
        query: str | None = None,
    ) -> dict[str, Any]:
        """A page of calls, newest first; with `query`, the calls whose id or event key it
        is (no paging)."""
        if query:
            found = await self.journal.find(query, sorted(self.config.sources))
            return {"calls": [self._listed(summary) for summary in found], "next_cursor": None}
        page = await self.journal.calls(where, limit=limit, cursor=cursor)
        return {
            "calls": [self._listed(summary) for summary in page.calls],
            "next_cursor": page.next_cursor,
        }

    def _listed(self, summary: CallSummary) -> dict[str, Any]:
        listed = summary.to_json()
        listed["first_seen"] = iso_ms(summary.first_at_ms)
        listed["last_activity"] = iso_ms(summary.last_at_ms)
        # one mark per configured sink, "-" where the call was never routed to it
        listed["sinks"] = {
            name: summary.sinks.get(name, {"state": "not_routed"}) for name in self.sink_names
        }
        return listed

    async def call(self, source: str, call_id: str) -> dict[str, Any] | None:
        """The merged record, the journal, each sink's state and attempts, the dead letters."""
        journal = await self.journal.call(source, call_id)
        record = await self.actions.store.get(source, call_id)
        if journal is None and record is None:
            return None
        entries = list(journal.entries) if journal else []
        summary = self._listed(journal.summary) if journal else None
        sinks: dict[str, dict[str, Any]] = {}
        for name in self.sink_names:
            state = summary["sinks"][name] if summary else {"state": "not_routed"}
            attempts = [
                entry
                for entry in entries
                if entry.get("kind") == "deliver" and entry.get("sink") == name
            ]
            sinks[name] = {**state, "attempts": attempts}
        # the journal names every dead letter of the call; those still stored are shown
        named = [str(entry["dead_letter"]) for entry in entries if entry.get("dead_letter")]
        dead = [
            entry_json(entry)
            for entry in await self.actions.dead_letters.get(named)
            if (entry.source, entry.call_id) == (source, call_id)
        ]
        return {
            "source": source,
            "call_id": call_id,
            "summary": summary,
            "record": None if record is None else record.to_json_dict(),
            "journal": entries,
            "journal_trimmed": journal.summary.counts.get("trimmed", 0) if journal else 0,
            "duplicates": dict(journal.summary.duplicates) if journal else {},
            "sinks": sinks,
            "dead_letters": dead,
        }

    async def dead_letters(
        self, *, stage: str | None = None, sink: str | None = None, source: str | None = None
    ) -> dict[str, Any]:
        entries = await self.actions.dead_letters.list(stage=stage, sink=sink, source=source)
        dropped = await self.actions.dead_letters.dropped()
        return {
            "dead_letters": [entry_json(entry) for entry in reversed(entries)],
            "groups": groups(entries),
            "dropped": dropped_json(dropped),
        }

    async def select_dead_letters(
        self,
        *,
        ids: Sequence[str] | None = None,
        stage: str | None = None,
        sink: str | None = None,
        source: str | None = None,
        reason_class: str | None = None,
    ) -> list[DeadLetter]:
        """The stored dead letters a replay or purge names: by id, or by filter."""
        entries = await self.actions.dead_letters.list(stage=stage, sink=sink, source=source)
        if ids is not None:
            wanted = set(ids)
            entries = [entry for entry in entries if entry.id in wanted]
        if reason_class:
            entries = [entry for entry in entries if entry.reason_class == reason_class]
        return entries

    async def overview(self) -> dict[str, Any]:
        minutes = await self.journal.minutes(WINDOW_MINUTES)
        sources = sorted(self.config.sources)
        rejections = await self.journal.rejections([*sources, UNKNOWN_SOURCE])
        return {
            "window_minutes": WINDOW_MINUTES,
            "minutes": [iso_ms(start) for start, _ in minutes],
            "sources": {
                name: {
                    "vendor": self.config.sources[name].vendor,
                    **source_activity(name, minutes),
                    "rejections": dict(rejections[name].counts),
                }
                for name in sources
            },
            "unknown_source_rejections": rejections[UNKNOWN_SOURCE].total,
            "sinks": {
                sink.name: {"type": sink.type, **sink_activity(sink.name, minutes)}
                for sink in self.config.sinks
            },
            "queues": await self.queue_depths(),
            "dead_letters": await self.dead_letter_counts(),
        }

    async def queue_depths(self) -> dict[str, dict[str, int]]:
        namespace = self.config.redis.namespace
        async with self.client.pipeline(transaction=False) as pipe:
            for queue in QUEUES:
                pipe.llen(queue_key(namespace, queue))
                pipe.llen(queue_key(namespace, queue + DELAYED_SUFFIX))
            counts = await pipe.execute()
        return {
            queue: {"ready": int(counts[2 * i]), "delayed": int(counts[2 * i + 1])}
            for i, queue in enumerate(QUEUES)
        }

    async def dead_letter_counts(self) -> dict[str, int]:
        namespace = self.config.redis.namespace
        async with self.client.pipeline(transaction=False) as pipe:
            for stage in STAGES:
                pipe.zcard(dlq_index_key(namespace, stage))
            counts = await pipe.execute()
        return {
            stage.removeprefix("callhook."): int(n) for stage, n in zip(STAGES, counts, strict=True)
        }

    async def rejections(self) -> dict[str, Any]:
        names = [*sorted(self.config.sources), UNKNOWN_SOURCE]
        found = await self.journal.rejections(names)
        return {
            name: {"counts": dict(found[name].counts), "last": list(found[name].last)}
            for name in names
        }

    async def health(self) -> dict[str, Any]:
        """The configuration as `check-config` prints it, and each source's and sink's last
        success, last error and (sources) rate-limit state."""
        health = await self.journal.health()

        def field(kind: str, name: str, what: str) -> str | None:
            """A health field; the times (kept as epoch ms) as ISO-8601."""
            value = health.get(f"{kind}:{name}:{what}")
            if value is None or what.endswith("_error"):
                return value
            return iso_ms(int(value)) if value.isdigit() else None

        sources = {}
        for name, settings in sorted(self.config.sources.items()):
            limit = await self.limiter.state(name)
            sources[name] = {
                "vendor": settings.vendor,
                "rate_limit_per_s": settings.rate_limit_per_s,
                "rate_limit": {
                    "next_slot_in_s": round(limit.next_slot_in_s, 3),
                    "paused_by_vendor_for_s": round(limit.paused_for_s, 3),
                },
                "last_accepted": field("source", name, "last_accepted"),
                "last_rejected": field("source", name, "last_rejected"),
                "last_enrich_ok": field("source", name, "last_enrich_ok"),
                "last_enrich_error_at": field("source", name, "last_enrich_error_at"),
                "last_enrich_error": field("source", name, "last_enrich_error"),
            }
        sinks = {
            sink.name: {
                "type": sink.type,
                "last_ok": field("sink", sink.name, "last_ok"),
                "last_error_at": field("sink", sink.name, "last_error_at"),
                "last_error": field("sink", sink.name, "last_error"),
            }
            for sink in self.config.sinks
        }
        return {"config": redacted(self.config), "sources": sources, "sinks": sinks}


def entry_json(entry: DeadLetter) -> dict[str, Any]:
    """A dead letter as the API shows it (its message arguments left out: payloads)."""
    return {
        "id": entry.id,
        "at": entry.at,
        "stage": entry.stage,
        "sink": entry.sink,
        "source": entry.source,
        "call_id": entry.call_id,
        "attempts": entry.attempts,
        "reason": entry.reason,
        "reason_class": entry.reason_class,
        "event_type": entry.kwargs.get("type"),
    }


def groups(entries: Sequence[DeadLetter]) -> list[dict[str, Any]]:
    """Dead letters failing the same way (stage, sink, reason class), biggest first."""
    grouped: defaultdict[tuple[str, str, str], list[DeadLetter]] = defaultdict(list)
    for entry in entries:
        grouped[(entry.stage, entry.sink or "", entry.reason_class)].append(entry)
    listed = [
        {
            "stage": stage,
            "sink": sink or None,
            "reason_class": reason,
            "count": len(members),
            "first_seen": min(entry.at for entry in members),
            "last_seen": max(entry.at for entry in members),
            "sources": sorted({entry.source for entry in members if entry.source}),
            "example": members[-1].reason,
        }
        for (stage, sink, reason), members in grouped.items()
    ]
    return sorted(listed, key=lambda group: (-group["count"], group["last_seen"]))


def dropped_json(dropped: Dropped) -> dict[str, int]:
    return {"retention": dropped.retention, "max_entries": dropped.max_entries}


def source_activity(
    source: str, minutes: Sequence[tuple[int, Mapping[str, int]]]
) -> dict[str, Any]:
    accepted = [counts.get(f"acc:{source}", 0) for _, counts in minutes]
    rejected = [counts.get(f"rej:{source}", 0) for _, counts in minutes]
    duplicates = [counts.get(f"dup:{source}", 0) for _, counts in minutes]
    enrich = Counter[str]()
    for _, counts in minutes:
        for outcome in ("ok", "payload_only", "retry", "dead_letter"):
            enrich[outcome] += counts.get(f"enrich:{outcome}:{source}", 0)
    return {
        "accepted": sum(accepted),
        "rejected": sum(rejected),
        "duplicates": sum(duplicates),
        "per_minute": {"accepted": accepted, "rejected": rejected},
        "enrich": dict(enrich),
    }


def sink_activity(sink: str, minutes: Sequence[tuple[int, Mapping[str, int]]]) -> dict[str, Any]:
    outcomes = ("ok", "skipped", "superseded", "retry", "dead_letter")
    good = ("ok", "skipped", "superseded")
    totals = Counter[str]()
    succeeded, failed = [], []
    latency = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    for _, counts in minutes:
        for outcome in outcomes:
            totals[outcome] += counts.get(f"sink:{outcome}:{sink}", 0)
        succeeded.append(sum(counts.get(f"sink:{o}:{sink}", 0) for o in good))
        failed.append(
            counts.get(f"sink:retry:{sink}", 0) + counts.get(f"sink:dead_letter:{sink}", 0)
        )
        for bucket in range(len(latency)):
            latency[bucket] += counts.get(f"lat:{sink}:{bucket}", 0)
    attempts = sum(totals.values())
    succeeded_total = sum(totals[outcome] for outcome in good)
    return {
        **{outcome: totals[outcome] for outcome in outcomes},
        "attempts": attempts,
        "success_rate": None if attempts == 0 else round(succeeded_total / attempts, 4),
        "p95_ms": percentile_ms(latency, 0.95),
        "per_minute": {"succeeded": succeeded, "failed": failed},
    }


def percentile_ms(buckets: Sequence[int], fraction: float) -> float | None:
    """The upper bound of the histogram bucket holding the `fraction` quantile (None when
    empty; the bound of the largest finite bucket stands in for the overflow bucket)."""
    total = sum(buckets)
    if total == 0:
        return None
    rank, seen = fraction * total, 0
    for index, count in enumerate(buckets):
        seen += count
        if seen >= rank:
            return float(LATENCY_BUCKETS_MS[min(index, len(LATENCY_BUCKETS_MS) - 1)])
    return float(LATENCY_BUCKETS_MS[-1])
