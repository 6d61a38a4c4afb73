"""The verdict of a scenario: what the sender got a 200 for, against what every sink holds,
by each sink's identity rule; and the figures, printed and kept in var/chaos/."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from callhook.sinks.http import webhook_id
from callhook.sinks.s3_recordings import key_segment
from tests.chaos.sender import SendReport
from tests.chaos.world import World

RESULTS = Path(__file__).resolve().parents[2] / "var" / "chaos" / "results.jsonl"


@dataclass(frozen=True)
class Keys:
    """One set (or count) of identities per sink."""

    calls: Counter[tuple[str, str]]
    events: Counter[tuple[str, str]]
    objects: Counter[tuple[str, str]]
    messages: Counter[tuple[str, str, str]]
    requests: Counter[str]


class Fed(Protocol):
    """An event the sinks must hold: one the sender got a 200 for (`Sent`), or one that
    reconcile fed (its scheduler logs each)."""

    @property
    def source(self) -> str: ...
    @property
    def call_id(self) -> str: ...
    @property
    def event_key(self) -> str: ...
    @property
    def type(self) -> str | None: ...


def expected(accepted: Sequence[Fed]) -> Keys:
    """What every event that got a 200 (or was fed) must have produced, exactly once each."""
    acted = [s for s in accepted if s.type is not None]
    return Keys(
        calls=Counter({(s.source, s.call_id) for s in acted}),
        events=Counter({(s.source, s.event_key) for s in acted}),
        objects=Counter({(s.source, key_segment(s.call_id)) for s in acted}),
        messages=Counter({(s.source, s.call_id, str(s.type)) for s in acted}),
        requests=Counter({webhook_id("crm", s.source, s.call_id, s.event_key) for s in acted}),
    )


def observed(world: World) -> Keys:
    calls, events = world.database_rows()
    objects: Counter[tuple[str, str]] = Counter()
    for key in world.s3_keys():
        # {source}/{YYYY}/{MM}/{DD}/{call_id}.json; recordings are not copied here
        parts = key.split("/")
        objects[(parts[0], parts[-1].removesuffix(".json"))] += 1
    messages: Counter[tuple[str, str, str]] = Counter()
    for message in list(world.slack.messages):
        _, source, call_id, event_type = str(message.get("text", "")).split("|", 3)
        messages[(source, call_id, event_type)] += 1
    requests = Counter(a.headers["webhook-id"] for a in list(world.receiver.delivered))
    return Keys(Counter(calls), Counter(events), objects, messages, requests)


def problems(
    want: Keys, got: Keys, *, distinct_requests: bool = True, slack_resends_allowed: int = 0
) -> list[str]:
    """Each identity missing, repeated or unexpected, per sink (empty when all is well).

    HTTP requests count by distinct `webhook-id` unless `distinct_requests` is False: a
    receiver dedupes on it, and a worker killed between the receiver's 2xx and the sent
    mark sends once more (callhook/sinks/once.py). Slack has no such key: a scenario that
    SIGKILLs workers allows at most `slack_resends_allowed` repeated messages (the sends
    the killed processes can have had between Slack's 200 and the mark), none missing."""
    found: list[str] = []
    pairs: tuple[tuple[str, Counter[Any], Counter[Any]], ...] = (
        ("database calls", want.calls, got.calls),
        ("database call_events", want.events, got.events),
        ("s3 objects", want.objects, got.objects),
        ("slack messages", want.messages, got.messages),
        ("http webhook-ids", want.requests, got.requests),
    )
    for sink, a, b in pairs:
        if sink.startswith("http") and distinct_requests:
            b = Counter(set(b))
        if sink.startswith("slack") and 0 < resent(b) <= slack_resends_allowed:
            b = Counter(set(b))
        wrong = {
            "missing": sorted(k for k in a if k not in b),
            "more than once": sorted(k for k, n in b.items() if n > 1),
            "unexpected": sorted(k for k in b if k not in a),
        }
        found += [f"{sink}: {len(k)} {what}, e.g. {k[:3]}" for what, k in wrong.items() if k]
    return found


def resent(counts: Counter[Any]) -> int:
    """How many sends repeated an identity already sent."""
    return sum(n - 1 for n in counts.values() if n > 1)


def delivered_figures(got: Keys) -> dict[str, int]:
    return {
        "database_calls": sum(got.calls.values()),
        "database_events": sum(got.events.values()),
        "s3_objects": sum(got.objects.values()),
        "slack_messages": sum(got.messages.values()),
        "slack_resent": resent(got.messages),
        "http_requests_2xx": sum(got.requests.values()),
        "http_distinct_ids": len(got.requests),
    }


def verdict(
    world: World, report: SendReport, *, fed: Sequence[Fed] = (), **kwargs: Any
) -> dict[str, Any]:
    """The scenario's figures; fails the test if any event was lost, doubled or invented,
    any delivery never got its 200, or anything was dead-lettered. `fed`: events that
    reached the sinks without a webhook (reconcile's), due exactly once too."""
    want, got = expected([*report.accepted, *fed]), observed(world)
    figures: dict[str, Any] = {
        **report.figures(),
        "expected_events": sum(want.events.values()),
        "expected_calls": sum(want.calls.values()),
        **delivered_figures(got),
        "dead_letters": world.dead_letters(),
    }
    found = problems(want, got, **kwargs)
    if figures["sent"] != figures["accepted"]:
        found.append(f"{figures['sent'] - figures['accepted']} deliveries never got a 200")
    if figures["dead_letters"]:
        found.append(f"{figures['dead_letters']} dead letters")
    figures["problems"] = found
    return figures


def record(scenario: str, figures: dict[str, Any]) -> None:
    """Print the figures and append them as one JSON line to var/chaos/results.jsonl."""
    line = {
        "scenario": scenario,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **figures,
    }
    print(f"\n[chaos] {scenario}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("ab") as out:
        out.write(orjson.dumps(line) + b"\n")
