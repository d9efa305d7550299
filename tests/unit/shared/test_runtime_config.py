"""Live settings validated by the settings models and applied to the limiter and the log level."""

import logging

import pytest

from mcp_servers.shared.config import StackSettings
from mcp_servers.shared.errors import InvalidRequest
from mcp_servers.shared.resilience.ratelimit import MemoryRateLimiter
from mcp_servers.shared.runtime_config import RuntimeConfig, apply_overrides


def test_apply_overrides_validates_with_the_section_models() -> None:
    settings = StackSettings()
    changed = apply_overrides(settings, {"rate_limit.burst": "3", "hybrid.backpressure_bytes": 4096})
    assert changed.rate_limit.burst == 3 and changed.hybrid.backpressure_bytes == 4096
    assert settings.rate_limit.burst == 60
    for overrides in ({"rate_limit.burst": 0}, {"observability.log_level": "LOUD"}, {"auth.required": False}):
        with pytest.raises(InvalidRequest):
            apply_overrides(settings, overrides)


def test_apply_updates_the_limiter_and_log_level_and_skips_invalid_values() -> None:
    settings = StackSettings()
    limiter = MemoryRateLimiter(settings.rate_limit)
    runtime = RuntimeConfig(settings, limiter)
    root = logging.getLogger()
    level = root.level
    try:
        runtime.apply({"rate_limit.calls_per_minute": 6, "rate_limit.burst": -1, "observability.log_level": "ERROR"})
        assert limiter.limit.calls_per_minute == 6 and limiter.limit.burst == 60
        assert root.level == logging.ERROR
        assert runtime.version == 1
        runtime.apply({"rate_limit.calls_per_minute": 6, "rate_limit.burst": -1, "observability.log_level": "ERROR"})
        assert runtime.version == 1  # nothing changed
        runtime.apply({})
        assert limiter.limit.calls_per_minute == settings.rate_limit.calls_per_minute
        assert root.level == logging.getLevelName(settings.observability.log_level)
    finally:
        root.setLevel(level)
