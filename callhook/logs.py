"""JSON-lines logging: one object per line, with `event_key`, `source`, `call_id` when known.

Pass context with `extra=`: `log.info("accepted", extra={"source": s, "event_key": k})`.
Channels: `callhook.ingress.rejected` (bad credentials or payloads from the outside),
`callhook.ingress.unsupported` (events we accept and drop), and the module loggers for
everything else; an unexpected exception is logged with its traceback on the module logger.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

#: attributes of a LogRecord that are plumbing, not context
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str = "INFO") -> None:
    """Route every logger (ours, Uvicorn's, Dramatiq's) to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "dramatiq"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # httpx and httpcore log every request's full URL at INFO; vendor query strings hold
    # phone numbers (Quo's List Calls `participants`), so only their warnings get through
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
