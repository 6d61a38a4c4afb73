"""Every Prometheus metric Callhook exposes, defined once (docs/operations.md lists them).

A group of processes (`callhook worker`, `callhook up`'s, `callhook serve --workers N`)
writes its samples to one directory, `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's
multiprocess mode), and whoever serves them merges that directory: one scrape covers the
group. `exposition` is that for the ingress's `/metrics`.
"""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

#: the environment variable prometheus-client reads for a group's shared directory
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_E2E_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

webhooks_total = Counter(
    "callhook_webhooks",
    "Webhook deliveries received, by source and outcome "
    "(accepted, duplicate, ignored, unauthenticated, bad_payload, too_large, timeout, "
    "unavailable, unknown_source).",
    ["source", "outcome"],
)
events_enqueued_total = Counter(
    "callhook_events_enqueued",
    "Events durably enqueued for enrichment, by source and normalised type.",
    ["source", "type"],
)
ingress_accept_seconds = Histogram(
    "callhook_ingress_accept_seconds",
    "Time of the Redis accept step (dedupe mark + enqueue).",
    buckets=_LATENCY_BUCKETS,
)
enrich_total = Counter(
    "callhook_enrich",
    "Enrichment attempts by vendor and outcome (ok, payload_only, retry, dead_letter).",
    ["vendor", "outcome"],
)
vendor_request_seconds = Histogram(
    "callhook_vendor_request_seconds",
    "Vendor API request latency.",
    ["vendor"],
    buckets=_LATENCY_BUCKETS,
)
sink_deliveries_total = Counter(
    "callhook_sink_deliveries",
    "Sink deliveries by sink and outcome (ok, retry, dead_letter, skipped).",
    ["sink", "outcome"],
)
sink_seconds = Histogram(
    "callhook_sink_seconds",
    "Time of one sink write.",
    ["sink"],
    buckets=_LATENCY_BUCKETS,
)
end_to_end_seconds = Histogram(
    "callhook_end_to_end_seconds",
    "From the webhook's acceptance to the record's delivery to a sink.",
    ["sink"],
    buckets=_E2E_BUCKETS,
)
dead_letters = Gauge(
    "callhook_dead_letters",
    "Dead-lettered work items currently stored, by stage queue.",
    ["queue"],
    multiprocess_mode="mostrecent",
)
dead_letters_dropped_total = Counter(
    "callhook_dead_letters_dropped",
    "Dead letters dropped by [dead_letters] limits, by stage queue and cause "
    "(retention, max_entries).",
    ["queue", "cause"],
)
queue_depth = Gauge(
    "callhook_queue_depth",
    "Messages waiting in each work queue (read from Redis at scrape time).",
    ["queue"],
    multiprocess_mode="mostrecent",
)
reconcile_calls_total = Counter(
    "callhook_reconcile_calls",
    "Calls seen by reconcile, by source and outcome (seen, new, updated, failed).",
    ["source", "outcome"],
)
replication_unconfirmed_total = Counter(
    "callhook_replication_unconfirmed",
    "Writes that fewer than [redis] replicas_ack replicas confirmed within the WAIT, by "
    "where (accept: answered 503; retry, dead_letter: the worker confirms again before it "
    "acknowledges the message they replace).",
    ["where"],
)
journal_write_errors_total = Counter(
    "callhook_journal_write_errors",
    "Call-journal writes that failed or timed out, by where (ingress, enrich, deliver, "
    "action); the work they describe went on.",
    ["where"],
)


def merged_registry(directory: str) -> CollectorRegistry:
    """A registry of every sample the processes writing to `directory` have written."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return registry


def exposition() -> bytes:
    """Prometheus text: this process's samples, or, in a group of processes sharing a
    multiprocess directory, every process's merged."""
    directory = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    return _generate_latest(merged_registry(directory) if directory else REGISTRY)
