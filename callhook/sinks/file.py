"""file: appends each delivered record as one JSON line to a local file (development)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar, Literal

import orjson

from callhook.sinks.base import Sink, SinkConfig, Trigger, WriteResult


class FileSinkConfig(SinkConfig):
    type: Literal["file"] = "file"
    path: Path


class FileSink(Sink[FileSinkConfig]):
    """Appends `{"trigger": ..., "record": ...}` lines. Not idempotent across replays on
    purpose: it is a development log of every delivery, read by people and tests."""

    type_name: ClassVar[str] = "file"
    config_model: ClassVar[type[SinkConfig]] = FileSinkConfig

    async def start(self) -> None:
        self.config.path.parent.mkdir(parents=True, exist_ok=True)

    async def write(self, record: dict[str, Any], trigger: Trigger) -> WriteResult:
        line = orjson.dumps(
            {
                "trigger": {"event_key": trigger.event_key, "type": trigger.event_type},
                "record": record,
            }
        )
        await asyncio.to_thread(self._append, line + b"\n")
        return WriteResult.WRITTEN

    def _append(self, line: bytes) -> None:
        with self.config.path.open("ab") as handle:
            handle.write(line)
