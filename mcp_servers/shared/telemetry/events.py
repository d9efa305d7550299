"""The records of the telemetry stream: `TelemetryEvent` (one line, as read back) and `Checkpoint` (a position).

Kept apart from the reader because `checkpoints.py` and the learning pipeline deal in them too; `DEPENDENCY`
is the dependency name the writer and the reader put in `DependencyUnavailable`.
"""

import json
from dataclasses import dataclass, field
from typing import Any, Final

DEPENDENCY: Final = "telemetry"


@dataclass(frozen=True, slots=True)
class TelemetryEvent:
    """One event as read back: envelope fields plus the emitter's own `data`."""

    id: str
    ts: str
    pid: int
    source: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, line: bytes) -> "TelemetryEvent":
        """Parse one line; raises ValueError when it is not an event written by TelemetryWriter."""
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        try:
            event = cls(
                id=record["id"],
                ts=record["ts"],
                pid=record["pid"],
                source=record["source"],
                type=record["type"],
                data=record.get("data", {}),
            )
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]}") from None
        if not isinstance(event.data, dict) or not isinstance(event.pid, int):
            raise ValueError("wrong field type")
        return event


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a reader stopped: the file generation `seq` and the bytes of it already consumed.

    A rotated file's generation is the `seq` in its name; the live file's is the `seq` it will get when rotated.
    A name alone cannot say this: `events.jsonl` is a different file after every rotation.
    """

    seq: int = 0
    offset: int = 0
