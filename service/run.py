"""Running the ingress under Uvicorn (uvloop and httptools when installed)."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from callhook import logs
from callhook.config import ENV_PATH_VARIABLE, Config, load_config
from callhook.lifecycle import die_with_multiprocessing_parent
from callhook.metrics import MULTIPROCESS_DIR_VARIABLE
from service.app import create_app
from service.protocol import Limits, guarded_protocol


def serve(
    config: Config, *, host: str | None, port: int | None, workers: int, log_level: str
) -> None:
    logs.configure(log_level)
    options = server_options(config, host=host, port=port, log_level=log_level)
    if workers == 1:
        app = create_app(config)
        freeze_startup_heap()
        uvicorn.run(app, **options)
        return
    # Several processes need an import string; each loads the same config file again, and
    # writes its metrics to one directory that each serves merged (callhook/metrics.py).
    if Path(config.origin).is_file():
        os.environ[ENV_PATH_VARIABLE] = str(Path(config.origin).resolve())
    metrics_dir = tempfile.mkdtemp(prefix="callhook-ingress-metrics-")
    os.environ[MULTIPROCESS_DIR_VARIABLE] = metrics_dir
    try:
        uvicorn.run("service.run:app_from_config", factory=True, workers=workers, **options)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def server_options(
    config: Config, *, host: str | None = None, port: int | None = None, log_level: str = "info"
) -> dict[str, Any]:
    """Uvicorn's settings for the ingress: `[ingress]`'s limits on every connection
    (service/protocol.py), and forwarded headers believed from `trusted_proxies` only."""
    ingress = config.ingress
    trusted = [str(network) for network in ingress.trusted_proxies]
    limits = Limits(
        max_head_bytes=ingress.max_header_bytes,
        head_timeout_s=ingress.header_timeout_s,
        body_timeout_s=ingress.body_timeout_s,
    )
    return {
        "host": host or ingress.host,
        "port": ingress.port if port is None else port,
        "log_level": log_level.lower(),
        "access_log": False,  # one JSON line per delivery comes from the app itself
        "log_config": None,
        "http": guarded_protocol(limits),
        "ws": "none",
        "timeout_keep_alive": ingress.keep_alive_timeout_s,
        # uvicorn counts the connection asking, and answers 503 from `limit_concurrency` on
        "limit_concurrency": ingress.max_connections + 1,
        # without trusted proxies, uvicorn would still believe 127.0.0.1 (or
        # $FORWARDED_ALLOW_IPS): a local proxy must be named like any other
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or None,
        "timeout_graceful_shutdown": 30,
    }


def app_from_config() -> Starlette:
    """Factory for multi-process serving (reads the config the parent exported); the
    worker process dies with Uvicorn's supervisor (callhook/lifecycle.py)."""
    die_with_multiprocessing_parent()
    logs.configure()
    app = create_app(load_config())
    freeze_startup_heap()
    return app


def freeze_startup_heap() -> None:
    """Move everything imported and built so far out of the garbage collector's sight.

    Those objects (Starlette, pydantic models, redis-py...) live as long as the process; a
    full collection walking them all was the ingress's p99 tail under load, and skipping
    them saves ~8 % CPU per request (docs/benchmarks.md).
    """
    gc.collect()
    gc.freeze()
