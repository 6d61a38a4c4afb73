"""A fleet on one Redis: two hosts, each with a config file of its own (the same [redis],
[sources] and [[sinks]]; its own [ingress] port and metrics ports), each running
`callhook serve`, a `callhook worker` group and `callhook scheduler`. The sender posts
round-robin to both ingress processes and sends every delivery once more, concurrently,
to the other one (a vendor's retry landing on the other host behind a load balancer).

Measured and asserted: one source's vendor rate limit holds fleet-wide (at the vendor
simulator, over sliding windows); the schedulers reconcile every interval, never two runs
at once, and never twice in one interval; every event, from
a webhook or fed by reconcile, lands exactly once in every sink; each process's own
metrics endpoint counts its own work (Prometheus's `instance` label is what tells the
hosts apart: no metric carries a host label)."""

from __future__ import annotations

import itertools
import signal
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from callhook.record import CallStatus
from tests.chaos.apps import max_in_window, max_per_second
from tests.chaos.sender import Sender
from tests.chaos.tally import record, verdict
from tests.chaos.world import Host, World, running_world
from tests.servers import PostgresServer
from workers.reconcile import EVENT_FOR_STATUS

#: the source whose vendor API allows few requests (the sandbox names each source after
#: its vendor): 4 deliveries a call, each enriched by a Get Call, make its demand here
#: about twice its limit
LIMITED = "cometchat"
LIMIT_PER_S = 5.0
#: windows long enough that the test process's own scheduling (the simulators note each
#: request when this busy process gets to it) averages out
RATE_WINDOW_S = 5.0
RATE_TOLERANCE = 1.2
#: the window must have been full: the demand really pressed on the limit
RATE_SATURATED = 0.8
#: every 2 s, over the last 10 minutes (the simulated calls began 95-300 s before their
#: webhooks): each run lists every call of the scenario and feeds those not enriched yet
INTERVAL_S = 2
LOOKBACK_S = 600
#: a run starting this soon after the fleet's previous one reconciled that interval twice
TWICE_BELOW_S = INTERVAL_S / 2
#: a run starting this much later than an interval after the previous one (or after its
#: end, if it ran longer) means an interval went without one
LATE_BY_S = INTERVAL_S / 2
CALLS = 90
CALLS_PER_S = 6.0
COPIES = 2

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class Tick:
    """A scheduler's tick that took the fleet lock and ran: when it started (its first
    source's window end, taken as the tick starts), when its last run was logged, and
    whose it was."""

    at: float
    ended: float
    host: str


@dataclass(frozen=True)
class FedEvent:
    """An event a reconcile run fed to enrichment (its scheduler logs each)."""

    source: str
    call_id: str
    event_key: str
    type: str | None


@dataclass
class SchedulerLogs:
    ticks: list[Tick] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    fed: list[FedEvent] = field(default_factory=list)
    fed_by: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def read_scheduler_logs(world: World, hosts: list[Host]) -> SchedulerLogs:
    """Every run, skipped tick and fed event the hosts' schedulers logged (JSON lines)."""
    first_source = min(world.config.sources)  # a tick runs the sources in sorted order
    found = SchedulerLogs()
    for host in hosts:
        current: Tick | None = None
        for line in (world.directory / f"scheduler-{host.name}.log").read_bytes().splitlines():
            if not line.startswith(b"{"):
                continue
            entry: dict[str, Any] = orjson.loads(line)
            message, at = str(entry["msg"]), datetime.fromisoformat(entry["ts"]).timestamp()
            if "until" in entry and entry.get("logger") == "callhook.workers.reconcile":
                if entry["source"] == first_source:
                    until = datetime.fromisoformat(str(entry["until"])).timestamp()
                    current = Tick(until, at, host.name)
                    found.ticks.append(current)
                elif current is not None:
                    current.ended = at
            if message.startswith("another scheduler is reconciling"):
                found.skipped[host.name] += 1
            elif message.startswith("fed a "):
                key = str(entry["event_key"])  # reconcile:<call_id>:<status>:<digest>
                event_type = EVENT_FOR_STATUS[CallStatus(key.rsplit(":", 2)[1])]
                fed = FedEvent(str(entry["source"]), str(entry["call_id"]), key, str(event_type))
                found.fed.append(fed)
                found.fed_by[host.name] += 1
            elif entry["level"] == "error":
                found.errors.append(f"{host.name}: {message}")
    found.ticks.sort(key=lambda tick: tick.at)
    return found


def scrape(url: str) -> Samples:
    """Every sample a /metrics endpoint serves, by name and labels."""
    text = httpx.get(url, timeout=10).raise_for_status().text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, *outcomes: str, **labels: str) -> int:
    """The sum of `name`'s samples carrying `labels` (and one of `outcomes`, if given)."""
    return int(
        sum(
            value
            for (sample, pairs), value in samples.items()
            if sample == name
            and set(labels.items()) <= set(pairs)
            and (not outcomes or dict(pairs).get("outcome") in outcomes)
        )
    )


@pytest.mark.timeout(200)
def test_a_fleet_on_one_redis(tmp_path: Path, postgres: PostgresServer) -> None:
    tables = {
        "sources": {LIMITED: {"rate_limit_per_s": LIMIT_PER_S}},
        "reconcile": {"interval_s": INTERVAL_S, "lookback_s": LOOKBACK_S},
    }
    with running_world(tmp_path, postgres, tables=tables) as world:
        hosts = [world.add_host("host-a"), world.add_host("host-b")]
        for host in hosts:
            world.start_ingress(host)
            world.start_workers(host.name, threads=8, host=host)
        world.wait_for_new_broker_ids(set(), len(hosts))
        for host in hosts:
            world.start_scheduler(host)
        sender = Sender(
            world.config,
            [host.ingress_url for host in hosts],
            world.states,
            calls=CALLS,
            calls_per_s=CALLS_PER_S,
            copies=COPIES,
        )
        report = sender.start().join(timeout=120)
        settled_s = world.wait_settled(timeout=120)
        # everything is enriched now: later runs find every call delivered and feed nothing
        scheduler_metrics = {h.name: scrape(h.scheduler_metrics_url) for h in hosts}
        alive = {name: child.process.poll() is None for name, child in world.schedulers.items()}
        for host in hosts:
            world.signal_group(world.schedulers[host.name], signal.SIGTERM)
        ingress_metrics = {h.name: scrape(f"{h.ingress_url}/metrics") for h in hosts}
        worker_metrics = {h.name: scrape(h.metrics_url) for h in hosts}
        logs = read_scheduler_logs(world, hosts)
        figures = verdict(world, report, fed=logs.fed)
        limited = sorted(world.simulators.times[LIMITED])

    # 1. the rate limit, at the vendor, whichever group's worker made the request
    windowed = max_in_window(limited, RATE_WINDOW_S)
    # 2. the schedulers: ticks that ran, in order, across the fleet
    ticks = logs.ticks
    pairs = list(itertools.pairwise(ticks))
    gaps = [b.at - a.at for a, b in pairs]
    overlapping = sum(b.at < a.ended for a, b in pairs)
    twice = sum(gap < TWICE_BELOW_S for gap in gaps)
    lateness = [b.at - max(a.at + INTERVAL_S, a.ended) for a, b in pairs]
    late = [round(s, 2) for s in lateness if s > LATE_BY_S]
    # 4. each process's own endpoint
    accepted = {
        h: total(m, "callhook_webhooks_total", "accepted") for h, m in ingress_metrics.items()
    }
    duplicate = {
        h: total(m, "callhook_webhooks_total", "duplicate") for h, m in ingress_metrics.items()
    }
    url_of = {host.name: host.ingress_url for host in hosts}
    answered = {h: report.answers_by_url[(url_of[h], "accepted")] for h in url_of}
    enriched = {
        h: total(m, "callhook_enrich_total", "ok", "payload_only")
        for h, m in worker_metrics.items()
    }
    limited_fetches = {
        h: total(m, "callhook_vendor_request_seconds_count", vendor=LIMITED)
        for h, m in worker_metrics.items()
    }
    written = {
        h: total(m, "callhook_sink_deliveries_total", "ok", "skipped", "superseded")
        for h, m in worker_metrics.items()
    }
    fed_counted = {
        h: total(m, "callhook_reconcile_calls_total", "new", "updated")
        for h, m in scheduler_metrics.items()
    }
    figures |= {
        "rate_limit_per_s": LIMIT_PER_S,
        "limited_vendor_requests": len(limited),
        "limited_busy_mean_per_s": round(len(limited) / (limited[-1] - limited[0]), 2),
        "limited_max_in_1s": max_per_second(limited),
        f"limited_max_per_s_over_{RATE_WINDOW_S:g}s": round(windowed / RATE_WINDOW_S, 2),
        "limited_fetches_by_group": limited_fetches,
        "reconcile_runs_by_host": dict(Counter(tick.host for tick in ticks)),
        "reconcile_ticks_skipped_for_lock": dict(logs.skipped),
        "reconcile_runs_per_interval": round(len(gaps) / (sum(gaps) / INTERVAL_S), 2),
        "reconcile_runs_overlapping": overlapping,
        "reconcile_intervals_run_twice": twice,
        "reconcile_intervals_missed": len(late),
        "reconcile_gap_min_max_s": [round(min(gaps), 2), round(max(gaps), 2)],
        "reconcile_fed_by_host": dict(logs.fed_by),
        "ingress_accepted_by_host": accepted,
        "ingress_duplicate_by_host": duplicate,
        "enriched_by_group": enriched,
        "sink_writes_by_group": written,
        "settled_after_last_post_s": round(settled_s, 1),
    }
    record("fleet", figures)

    assert figures["problems"] == []
    assert logs.errors == []
    # the limit held fleet-wide (a limit per group would let through about twice as much:
    # both groups fetched from the limited vendor), and the demand did press on it
    assert windowed <= LIMIT_PER_S * RATE_WINDOW_S * RATE_TOLERANCE, figures
    assert windowed >= LIMIT_PER_S * RATE_WINDOW_S * RATE_SATURATED, figures
    assert all(n > 0 for n in limited_fetches.values()), limited_fetches
    # each ingress counts what it answered, and the two make up the fleet's
    assert accepted == answered
    assert all(n > 0 for n in accepted.values()), accepted
    assert sum(accepted.values()) == len(report.sent) == sum(duplicate.values())
    # each worker group counts its own work; together, every event once
    events, sinks = figures["expected_events"], len(world.config.sinks)
    assert all(n > 0 for n in enriched.values()), enriched
    assert sum(enriched.values()) == events
    assert all(n > 0 for n in written.values()), written
    assert sum(written.values()) == events * sinks
    # each scheduler counts what it fed; both ran throughout, never two runs at once, and
    # no interval went without a run
    assert fed_counted == {h: logs.fed_by[h] for h in fed_counted}
    assert alive == {h: True for h in url_of}
    assert overlapping == 0, figures
    assert late == [], figures
    assert twice == 0, figures  # never twice in one interval (workers/scheduler.py's claim)
