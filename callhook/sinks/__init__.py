"""The sink registry: one line per sink type. A `[[sinks]]` table picks one by `type = "..."`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callhook.registry import registry
from callhook.sinks.base import Sink
from callhook.sinks.file import FileSink

SINKS: Mapping[str, type[Sink[Any]]] = registry(
    (FileSink,),
    key=lambda sink: sink.type_name,
)
