"""Running the ingress under Uvicorn (uvloop and httptools when installed)."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from callhook import logs
from callhook.config import ENV_PATH_VARIABLE, Config, load_config
from service.app import create_app


def serve(
    config: Config, *, host: str | None, port: int | None, workers: int, log_level: str
) -> None:
    logs.configure(log_level)
    options = {
        "host": host or config.ingress.host,
        "port": config.ingress.port if port is None else port,
        "log_level": log_level.lower(),
        "access_log": False,  # one JSON line per delivery comes from the app itself
        "log_config": None,
        "proxy_headers": True,
        "timeout_graceful_shutdown": 30,
    }
    if workers == 1:
        app = create_app(config)
        freeze_startup_heap()
        uvicorn.run(app, **options)  # type: ignore[arg-type]
        return
    # Several processes need an import string; each loads the same config file again.
    if Path(config.origin).is_file():
        os.environ[ENV_PATH_VARIABLE] = str(Path(config.origin).resolve())
    uvicorn.run("service.run:app_from_config", factory=True, workers=workers, **options)  # type: ignore[arg-type]


def app_from_config() -> Starlette:
    """Factory for multi-process serving (reads the config the parent exported)."""
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
