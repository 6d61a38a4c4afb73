"""The `callhook` command. Thin: parse arguments, load the config, call into the processes."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from callhook.config import Config, load_config, redacted
from callhook.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def config_option(command: F) -> F:
    """`--config PATH` on every sub-command; loads the config or exits with one line."""

    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help=(
            "Config file (default: $CALLHOOK_CONFIG, else ./callhook.toml, else "
            "./var/sandbox.toml if `callhook up` wrote one, else built-in defaults)."
        ),
    )
    @functools.wraps(command)
    def wrapper(*args: Any, config_path: str | None, **kwargs: Any) -> Any:
        return command(*args, config=load_or_exit(config_path), **kwargs)

    return wrapper  # type: ignore[return-value]


def load_or_exit(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(f"callhook: config error: {exc}", err=True)
        sys.exit(2)


def exit_with(run: Callable[[], int]) -> NoReturn:
    """Exit with `run()`'s status; a ConfigError it raises (a metrics port already taken)
    is one line and status 2, as for a bad config file."""
    try:
        status = run()
    except ConfigError as exc:
        click.echo(f"callhook: {exc}", err=True)
        status = 2
    sys.exit(status)


def metrics_port_option(default: int, what: str) -> Callable[[F], F]:
    return click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        default=default,
        show_default=True,
        help=f"Serve {what} Prometheus metrics on this port (0: don't).",
    )


@click.group()
@click.version_option(package_name="callhook")
def main() -> None:
    """Callhook: the webhook target for calling platforms."""


@main.command("check-config")
@config_option
def check_config(config: Config) -> None:
    """Validate the config and print it resolved, with secrets redacted."""
    click.echo(f"# config: {config.origin}")
    click.echo(json.dumps(redacted(config), indent=2))


@main.command()
@config_option
@click.option("--host", default=None, help="Bind address (default: ingress.host).")
@click.option("--port", type=int, default=None, help="Port (default: ingress.port).")
@click.option("--workers", type=click.IntRange(1), default=1, help="Uvicorn worker processes.")
@click.option("--log-level", default="info", show_default=True)
def serve(config: Config, host: str | None, port: int | None, workers: int, log_level: str) -> None:
    """Run the HTTP ingress."""
    from service.run import serve as run_serve

    run_serve(config, host=host, port=port, workers=workers, log_level=log_level)


@main.command("send-test-event")
@config_option
@click.argument("source")
@click.option("--url", default=None, help="Ingress base URL (default: from ingress.host/port).")
@click.option(
    "--type",
    "vendor_type",
    default=None,
    help="Vendor event type (default: the vendor's call-completed event). --list-types shows them.",
)
@click.option("--call-id", default=None, help="Use this call id instead of a new one.")
@click.option("--list-types", is_flag=True, help="List the event types and exit.")
def send_test_event(
    config: Config,
    source: str,
    url: str | None,
    vendor_type: str | None,
    call_id: str | None,
    list_types: bool,
) -> None:
    """Post a realistic, correctly authenticated event for SOURCE to a running ingress."""
    from callhook.testevent import TestEventError, send

    try:
        outcome = send(
            config, source, url=url, vendor_type=vendor_type, call_id=call_id, list_types=list_types
        )
    except TestEventError as exc:
        click.echo(f"callhook: {exc}", err=True)
        sys.exit(2)
    click.echo(outcome.describe())
    if not outcome.ok:
        sys.exit(1)


@main.command()
@config_option
@click.option("--processes", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=8,
    show_default=True,
    help="Concurrent messages per process.",
)
@metrics_port_option(9191, "the workers'")
def worker(config: Config, processes: int, threads: int, metrics_port: int) -> None:
    """Run Dramatiq worker processes for every queue (each starts every sink as it boots)."""
    from callhook import logs
    from workers.launch import run_workers

    logs.configure()
    port = metrics_port or None
    exit_with(lambda: run_workers(config, processes=processes, threads=threads, metrics_port=port))


@main.command()
@config_option
@click.option("--host", default=None, help="Bind address (default: ingress.host).")
@click.option("--port", type=int, default=None, help="Port (default: ingress.port).")
@click.option(
    "--processes", type=click.IntRange(1), default=1, show_default=True, help="Worker processes."
)
@click.option("--threads", type=click.IntRange(1), default=8, show_default=True)
@click.option(
    "--var-dir",
    type=click.Path(file_okay=False),
    default="var",
    show_default=True,
    help="Where sandbox mode keeps its generated config, secrets and database.",
)
@click.option(
    "--redis-url",
    default="redis://127.0.0.1:6379/0",
    show_default=True,
    help="Sandbox mode: the Redis to use.",
)
@click.option(
    "--namespace",
    default="callhook-sandbox",
    show_default=True,
    help="Sandbox mode: the prefix of every Redis key.",
)
@metrics_port_option(9191, "the workers' and the scheduler's")
def up(
    config: Config,
    host: str | None,
    port: int | None,
    processes: int,
    threads: int,
    var_dir: str,
    redis_url: str,
    namespace: str,
    metrics_port: int,
) -> None:
    """Ingress, workers and the reconcile scheduler in one command (Ctrl-C stops all).

    With no config file at all, runs the sandbox: one source per vendor, named after it,
    with generated secrets, their vendor APIs simulated in-process, records in SQLite.
    """
    from callhook.up import run_up

    exit_with(
        lambda: run_up(
            config,
            host=host,
            port=port,
            processes=processes,
            threads=threads,
            var_dir=var_dir,
            redis_url=redis_url,
            namespace=namespace,
            metrics_port=metrics_port or None,
        )
    )


@main.group()
def dlq() -> None:
    """Inspect, replay and purge dead-lettered work."""


@dlq.command("list")
@config_option
@click.option("--sink", default=None, help="Only this sink's entries.")
def dlq_list(config: Config, sink: str | None) -> None:
    """Table of dead letters: when, stage, sink, call, reason.

    Control characters in any field are shown escaped (\\x1b, \\r). Entries past the
    [dead_letters] limits are dropped first; the last line says how many were so far.
    """
    from workers.dlq_cli import list_entries

    click.echo(list_entries(config, sink=sink))


@dlq.command("replay")
@config_option
@click.option("--sink", default=None, help="Replay this sink's entries.")
@click.option("--id", "ids", multiple=True, help="Replay this entry (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Replay every entry.")
def dlq_replay(config: Config, sink: str | None, ids: tuple[str, ...], everything: bool) -> None:
    """Re-enqueue dead letters (removed once re-enqueued)."""
    from workers.dlq_cli import replay

    if not (sink or ids or everything):
        click.echo("callhook: say which: --all, --sink NAME or --id ID", err=True)
        sys.exit(2)
    click.echo(replay(config, sink=sink, ids=ids))


@dlq.command("purge")
@config_option
@click.option("--sink", default=None, help="Only this sink's entries.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dlq_purge(config: Config, sink: str | None, yes: bool) -> None:
    """Delete dead letters for good."""
    from workers.dlq_cli import purge

    if not yes:
        click.confirm("Delete these dead letters for good?", abort=True)
    click.echo(purge(config, sink=sink))


@main.command()
@config_option
@click.argument("source")
@click.option("--since", required=True, help="Start of the window (ISO-8601; UTC if no offset).")
@click.option("--until", default=None, help="End of the window (ISO-8601; default: now).")
@click.option("--dry-run", is_flag=True, help="Page through and count; enqueue nothing.")
def reconcile(config: Config, source: str, since: str, until: str | None, dry_run: bool) -> None:
    """Find SOURCE's calls the vendor never delivered (List Calls) and feed them through."""
    from workers.reconcile_cli import run_reconcile

    out = sys.stdout
    sys.exit(
        run_reconcile(
            config, source, since=since, until=until, dry_run=dry_run, out=out, tty=out.isatty()
        )
    )


@main.command()
@config_option
@metrics_port_option(9192, "the scheduler's")
def scheduler(config: Config, metrics_port: int) -> None:
    """Reconcile every source every [reconcile].interval_s, in the foreground."""
    from callhook import logs
    from workers.scheduler import run_scheduler

    logs.configure()
    exit_with(lambda: run_scheduler(config, metrics_port=metrics_port or None))
