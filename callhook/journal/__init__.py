"""The call journal: what happened to every call, in order, for the console and the API.

Written by the ingress (inside its accept script: an accepted delivery and its journal
entry are one Redis step), by the workers (each enrichment and sink attempt) and by the
actions operators take (replays, redeliveries). Every write goes through one Lua function
(`journal.lua`) and is best-effort by design: a journal write that fails is logged and
counted (`callhook_journal_write_errors_total`) and the work goes on.

Redis layout, under `{namespace}:journal` (`prefix`):

    {p}:call:{source}:{call_id}      list of entries (JSON), oldest first, capped per call
    {p}:summary:{source}:{call_id}   hash: the call at a glance (status, parties, each
                                     sink's state, counts) for listing without the record
    {p}:idx:all                      sorted sets of `{source}:{call_id}` scored by when the
    {p}:idx:source:{source}          call was first seen (ms), for listing newest first
    {p}:idx:status:{status}
    {p}:idx:failed                   calls with a failed attempt (a retry or a dead letter)
    {p}:event:{source}:{event_key}   call id, to find a call by an event key
    {p}:stats:{minute}               hash of per-minute counters (kept two hours)
    {p}:health                       hash: last success and last error per source and sink
    {p}:rejected:{source}            hash: rejected deliveries by code; `...:last` the
                                     newest 100 of them (list, JSON)

Entries, summaries, indexes and event keys are kept `[journal] retention_days` after the
call's last activity (indexes: after it was first seen).
"""

from __future__ import annotations


def prefix(namespace: str) -> str:
    return f"{namespace}:journal"


def call_member(source: str, call_id: str) -> str:
    """A call's member in the indexes (a source name has no ':'; a call id may)."""
    return f"{source}:{call_id}"


def split_member(member: str) -> tuple[str, str]:
    source, _, call_id = member.partition(":")
    return source, call_id
