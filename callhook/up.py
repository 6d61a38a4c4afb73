"""`callhook up`: ingress, workers and the scheduler in one command, for a laptop or one box.

The ingress serves its own metrics at `/metrics`; the workers and the scheduler write theirs
to one multiprocess-mode directory, served merged on `metrics_port`. If the workers or the
scheduler exit (a worker finds a sink misconfigured at start), everything stops and `up`
exits with their status. On Ctrl-C or SIGTERM the children are stopped together, and `up`
exits with the workers' status when it is not 0 (5: the shutdown timeout ran out with work
in flight, workers/shutdown.py). The children die with `up` if it is killed outright
(callhook/lifecycle.py).
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import uvicorn

from callhook import logs
from callhook.config import SANDBOX_PATH, Config, load_config
from callhook.sandbox import Sandbox, prepare
from service.app import create_app
from service.run import server_options
from workers.launch import remove_metrics, start_metrics, start_scheduler, start_workers
from workers.shutdown import SHUTDOWN_GRACE_S

log = logging.getLogger("callhook.up")

#: how long past the workers' own deadline (timeout + grace) a child gets before SIGKILL
STOP_MARGIN_S = 10.0


def is_sandbox(config: Config) -> bool:
    """No config file was given or found (the sandbox's own file does not count)."""
    return config.origin in ("built-in defaults", str(SANDBOX_PATH))


def run_up(
    config: Config,
    *,
    host: str | None,
    port: int | None,
    processes: int,
    threads: int,
    var_dir: str,
    redis_url: str = "redis://127.0.0.1:6379/0",
    namespace: str = "callhook-sandbox",
    metrics_port: int | None = None,
) -> int:
    logs.configure()
    host = host or config.ingress.host
    port = config.ingress.port if port is None else port
    # first: a metrics port already taken is one line (ConfigError) before anything starts
    metrics_dir = None if metrics_port is None else start_metrics(metrics_port, addr=host)
    sandbox: Sandbox | None = None
    simulator: uvicorn.Server | None = None
    simulator_port = port + 1
    if is_sandbox(config):
        listener = simulator_socket(port + 1)
        simulator_port = listener.getsockname()[1]
        sandbox = prepare(
            Path(var_dir),
            ingress_host=host,
            ingress_port=port,
            simulator_port=simulator_port,
            redis_url=redis_url,
            namespace=namespace,
        )
        config = load_config(sandbox.config_path)
        simulator = background_server(sandbox, listener)

    workers = start_workers(config, processes=processes, threads=threads, metrics_dir=metrics_dir)
    scheduler = start_scheduler(config, metrics_dir=metrics_dir)
    sinks = ", ".join(f"{s.name} ({s.type})" for s in config.sinks) or "none"
    sources = ", ".join(sorted(config.sources)) or "none (every webhook answers 404)"
    mode = (
        f"sandbox (vendor APIs simulated at http://127.0.0.1:{simulator_port})"
        if sandbox
        else config.origin
    )
    every = config.reconcile.interval_s
    schedule = f"every {every}s (pid {scheduler.pid})" if every > 0 else "disabled"
    metrics = f"http://{host}:{metrics_port}/metrics" if metrics_port is not None else "off"
    print(
        f"callhook up: ingress http://{host}:{port} · sources: {sources} · workers: {processes}x"
        f"{threads} threads (pid {workers.pid}) · sinks: {sinks} · reconcile: {schedule} · "
        f"worker+scheduler metrics: {metrics} · console: {console_url(config, host, port, sandbox)}"
        f" · config: {mode}",
        flush=True,
    )
    # the same limits as `callhook serve` (header size, deadlines, connection cap)
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), **server_options(config, host=host, port=port))
    )
    children = {"workers": workers, "scheduler": scheduler}
    exited: list[int] = []
    threading.Thread(
        target=stop_when_one_exits,
        args=(children, server, exited),
        name="children-watch",
        daemon=True,
    ).start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it handled; we are stopping anyway
    finally:
        server.should_exit = True  # we stop the children now: the watch is over
        wait_s = config.workers.shutdown_timeout_s + SHUTDOWN_GRACE_S + STOP_MARGIN_S
        statuses = stop(children, timeout_s=wait_s)
        if simulator is not None:
            simulator.should_exit = True
        remove_metrics(metrics_dir)
    if exited:
        return exited[0] or 1
    if statuses["workers"] != 0:
        return max(statuses["workers"], 1)
    return 0 if server.started else 1


def console_url(config: Config, host: str, port: int, sandbox: Sandbox | None) -> str:
    """Where the console is; in sandbox mode a link that logs in with the generated token
    (a real config's token is never printed)."""
    if not config.console.enabled:
        return "off (set [console] token)"
    base = f"http://{host}:{port}/console"
    if sandbox is not None:
        return f"{base}/login?token={sandbox.console_token}"
    return f"{base}/"


def stop_when_one_exits(
    children: dict[str, subprocess.Popen[bytes]], server: uvicorn.Server, exited: list[int]
) -> None:
    """Stop the ingress when a child exits by itself (the workers found a sink misconfigured
    at start, say), and note its status in `exited`."""
    while not server.should_exit:
        for name, child in children.items():
            status = child.poll()
            if status is not None and not server.should_exit:
                log.error("the %s exited (status %s); stopping everything", name, status)
                exited.append(status)
                server.should_exit = True
                return
        time.sleep(0.2)


def simulator_socket(preferred_port: int) -> socket.socket:
    """A listening socket for the vendor simulators on 127.0.0.1: `preferred_port` (the
    ingress port + 1) when it is free, else one the system picks. Bound before the sandbox
    config is written, so the config names a port that is surely ours."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("127.0.0.1", preferred_port))
    except OSError:
        listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    return listener


def background_server(sandbox: Sandbox, listener: socket.socket) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(
            sandbox.simulator_app(),
            log_level="warning",
            access_log=False,
            log_config=None,
            lifespan="off",
        )
    )
    # uvicorn installs signal handlers only in the main thread: this one just serves
    threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="vendor-simulators", daemon=True
    ).start()
    return server


def stop(children: dict[str, subprocess.Popen[bytes]], *, timeout_s: float) -> dict[str, int]:
    """SIGTERM every child at once (workers finish or requeue in-flight work), wait up to
    `timeout_s` for them all, SIGKILL any still running; their exit statuses."""
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for name, child in children.items():
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("the %s did not stop within %.0fs of SIGTERM; killing it", name, timeout_s)
            child.kill()
            child.wait()
    return {name: child.returncode for name, child in children.items()}
