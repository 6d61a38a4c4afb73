"""`callhook reconcile SOURCE --since ISO [--until ISO] [--dry-run]` on a terminal: a live
progress line while it pages, then a summary of what it found and fed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

import click

from callhook.config import Config
from workers.reconcile import Outcome, Reconciler, Summary, iso

#: without a terminal (logs, CI), a progress line this often
PLAIN_EVERY_S = 5.0
#: on a terminal, the progress line is redrawn at most this often
TTY_EVERY_S = 0.1


class UsageError(Exception):
    """A bad argument: the command prints it in one line and exits 2."""


def parse_moment(value: str, option: str) -> datetime:
    """An ISO-8601 date or date-time; without an offset it is taken as UTC."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"{option}: not an ISO-8601 date or time: {value!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class ProgressLine:
    """Redraws one status line on a terminal; prints one every PLAIN_EVERY_S elsewhere."""

    def __init__(self, out: TextIO, *, tty: bool, clock: Callable[[], float] = time.monotonic):
        self.out = out
        self.tty = tty
        self.clock = clock
        self.every = TTY_EVERY_S if tty else PLAIN_EVERY_S
        self.last = clock()
        self.drawn = False

    def __call__(self, summary: Summary) -> None:
        now = self.clock()
        if now - self.last < self.every:
            return
        self.last = now
        line = (
            f"{summary.source}: {summary.seen} calls seen · {summary[Outcome.NEW]} new · "
            f"{summary[Outcome.UPDATED]} updated · "
            f"{summary[Outcome.ALREADY_DELIVERED]} already delivered"
        )
        # plain writes: click.echo would strip the erase-line code from a non-terminal
        self.out.write(f"\r\x1b[2K{line}" if self.tty else f"{line}\n")
        self.out.flush()
        self.drawn = self.tty

    def finish(self) -> None:
        """Erase the progress line before the summary is printed."""
        if self.drawn:
            self.out.write("\r\x1b[2K")
            self.out.flush()


def render(summary: Summary) -> str:
    """The end-of-run summary, one count per line."""
    would = " (would be fed)" if summary.dry_run else ""
    head = f"reconcile {summary.source}: {iso(summary.since)} → {iso(summary.until)}"
    if summary.dry_run:
        head += " (dry run: nothing enqueued)"
    rows = [
        ("calls seen", summary.seen, ""),
        ("new", summary[Outcome.NEW], would),
        ("updated", summary[Outcome.UPDATED], would),
        ("already delivered", summary[Outcome.ALREADY_DELIVERED], ""),
        ("in progress", summary[Outcome.IN_PROGRESS], " (skipped: a later run finds them)"),
        (
            "failed",
            summary[Outcome.FAILED],
            " (unreadable: see the log)" if summary[Outcome.FAILED] else "",
        ),
        (
            "vendor requests",
            summary.requests,
            f" ({summary.retries} retries)" if summary.retries else "",
        ),
    ]
    lines = [head, *(f"  {name:<18}{count:>7}{extra}" for name, count, extra in rows)]
    lines += [f"  not covered: {note}" for note in summary.notes]
    if summary.error is not None:
        lines.append(f"  error: {summary.error} (the rest of the window was not checked)")
    return "\n".join(lines)


def run_reconcile(
    config: Config,
    source: str,
    *,
    since: str,
    until: str | None,
    dry_run: bool,
    out: TextIO,
    tty: bool,
) -> int:
    """Run one reconciliation and print its summary to `out`. Exit status: 0 when the whole
    window was covered and every call handled, 1 otherwise, 2 for a bad argument."""
    try:
        if source not in config.sources:
            known = ", ".join(sorted(config.sources)) or "none"
            raise UsageError(f"unknown source {source!r} (configured: {known})")
        start = parse_moment(since, "--since")
        end = parse_moment(until, "--until") if until else datetime.now(UTC)
        if start >= end:
            raise UsageError(f"--since ({iso(start)}) must be before --until ({iso(end)})")
    except UsageError as exc:
        click.echo(f"callhook: {exc}", err=True)
        return 2
    progress = ProgressLine(out, tty=tty)
    summary = asyncio.run(_run(config, source, start, end, dry_run, progress))
    progress.finish()
    click.echo(render(summary), file=out)
    return 0 if summary.ok else 1


async def _run(
    config: Config,
    source: str,
    since: datetime,
    until: datetime,
    dry_run: bool,
    progress: ProgressLine,
) -> Summary:
    async with Reconciler.open(config) as reconciler:
        return await reconciler.run(source, since, until, dry_run=dry_run, progress=progress)
