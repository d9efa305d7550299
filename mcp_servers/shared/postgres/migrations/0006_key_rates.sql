-- An API key's own rate limit (`mcp-stack keys create --calls-per-minute --burst`): a bulk client gets a bigger
-- budget than the server's default without raising it for every key. NULL takes the server's
-- `rate_limit.calls_per_minute` / `rate_limit.burst`. The bounds are those of `RateLimitSettings`.

ALTER TABLE api_keys
    ADD COLUMN calls_per_minute double precision NULL
        CONSTRAINT api_keys_calls_per_minute_bounds CHECK (calls_per_minute > 0 AND calls_per_minute <= 1000000),
    ADD COLUMN burst integer NULL
        CONSTRAINT api_keys_burst_bounds CHECK (burst >= 1 AND burst <= 100000);
