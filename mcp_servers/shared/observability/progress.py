"""Progress of long work in the log: at most one record every few seconds, and always the last one."""

import logging
import math
import time
from collections.abc import Callable

__all__ = ["ProgressLog"]


class ProgressLog:
    """Logs `message` at INFO with `<unit>_done`/`<unit>_total` (and any extra fields) when `every_seconds` have
    passed since the last record, or when the work is done."""

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        *,
        unit: str,
        every_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._message = message
        self._unit = unit
        self._every = every_seconds
        self._clock = clock
        self._last = -math.inf

    def update(self, done: int, total: int, **extra: object) -> None:
        """Report `done` of `total`; a call that is neither due nor final logs nothing."""
        now = self._clock()
        if done >= total or now - self._last >= self._every:
            self._last = now
            fields = {**extra, f"{self._unit}_done": done, f"{self._unit}_total": max(total, done)}
            self._logger.info(self._message, extra=fields)
