"""The sink registry: one line per sink type. A `[[sinks]]` table picks one by `type = "..."`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callhook.registry import registry
from callhook.sinks.base import Sink
from callhook.sinks.database import DatabaseSink
from callhook.sinks.file import FileSink
from callhook.sinks.http import HttpSink
from callhook.sinks.s3 import S3Sink
from callhook.sinks.slack import SlackSink

SINKS: Mapping[str, type[Sink[Any]]] = registry(
    (
        DatabaseSink,
        S3Sink,
        SlackSink,
        HttpSink,
        FileSink,
    ),
    key=lambda sink: sink.type_name,
)
