"""`callhook up`: ingress, workers and the scheduler in one command, for a laptop or one box.

The ingress serves its own metrics at `/metrics`; the workers and the scheduler write theirs
to one multiprocess-mode directory, served merged on `metrics_port`. If the workers or the
scheduler exit (a worker finds a sink misconfigured at start), everything stops and `up`
exits with their status.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from pathlib import Path

import uvicorn

from callhook import logs
from callhook.config import SANDBOX_PATH, Config, load_config
from callhook.sandbox import Sandbox, prepare
from service.app import create_app
from workers.launch import remove_metrics, start_metrics, start_scheduler, start_workers

log = logging.getLogger("callhook.up")


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
    if is_sandbox(config):
        sandbox = prepare(
            Path(var_dir),
            ingress_host=host,
            ingress_port=port,
            simulator_port=port + 1,
            redis_url=redis_url,
            namespace=namespace,
        )
        config = load_config(sandbox.config_path)
        simulator = background_server(sandbox, host="127.0.0.1", port=port + 1)

    workers = start_workers(config, processes=processes, threads=threads, metrics_dir=metrics_dir)
    scheduler = start_scheduler(config, metrics_dir=metrics_dir)
    sinks = ", ".join(f"{s.name} ({s.type})" for s in config.sinks) or "none"
    sources = ", ".join(sorted(config.sources)) or "none (every webhook answers 404)"
    mode = (
        f"sandbox (vendor APIs simulated at http://127.0.0.1:{port + 1})"
        if sandbox
        else config.origin
    )
    every = config.reconcile.interval_s
    schedule = f"every {every}s (pid {scheduler.pid})" if every > 0 else "disabled"
    metrics = f"http://{host}:{metrics_port}/metrics" if metrics_port is not None else "off"
    print(
        f"callhook up: ingress http://{host}:{port} · sources: {sources} · workers: {processes}x"
        f"{threads} threads (pid {workers.pid}) · sinks: {sinks} · reconcile: {schedule} · "
        f"worker+scheduler metrics: {metrics} · config: {mode}",
        flush=True,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=host,
            port=port,
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=30,
        )
    )
    exited: list[int] = []
    threading.Thread(
        target=stop_when_one_exits,
        args=({"workers": workers, "scheduler": scheduler}, server, exited),
        name="children-watch",
        daemon=True,
    ).start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it handled; we are stopping anyway
    finally:
        server.should_exit = True  # we stop the children now: the watch is over
        stop(scheduler)
        stop(workers)
        if simulator is not None:
            simulator.should_exit = True
        remove_metrics(metrics_dir)
    if exited:
        return exited[0] or 1
    return 0 if server.started else 1


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


def background_server(sandbox: Sandbox, *, host: str, port: int) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(
            sandbox.simulator_app(),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            log_config=None,
            lifespan="off",
        )
    )
    # uvicorn installs signal handlers only in the main thread: this one just serves
    threading.Thread(target=server.run, name="vendor-simulators", daemon=True).start()
    return server


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a child (workers finish or requeue in-flight work), then wait."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
