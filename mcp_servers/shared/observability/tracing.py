"""OpenTelemetry: export only when an OTLP endpoint is configured, and the spans the SDK does not open itself.

The MCP SDK opens a client span around every request a `Peer` sends (and puts its W3C `traceparent`/`tracestate`
into the request's `_meta`, SEP-414) and a server span around every request a server handles (parented by the
`_meta` it received), so one trace follows a call across servers. We open the roots the SDK cannot know about:
one per Ralph iteration. Without a configured provider every span is a no-op and nothing is sent in `_meta`.
"""

import contextlib
import logging
from collections.abc import Iterator, Mapping

from opentelemetry import context, trace
from opentelemetry.util.types import AttributeValue

__all__ = ["configure_tracing", "root_span"]

logger = logging.getLogger(__name__)
_configured = False
# A proxy until a provider is installed (by `configure_tracing`, or by a test); it then delegates to that one.
_tracer = trace.get_tracer("mcp_servers")


def configure_tracing(service_name: str, otlp_endpoint: str | None) -> None:
    """Install an OTLP/HTTP span exporter once per process; a no-op without an endpoint."""
    global _configured
    if otlp_endpoint is None or _configured:
        return
    # Optional heavy dependencies, imported only when export is wanted.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)
    _configured = True
    logger.info("tracing export enabled", extra={"service": service_name})


@contextlib.contextmanager
def root_span(name: str, attributes: Mapping[str, AttributeValue]) -> Iterator[trace.Span]:
    """A current span that starts a new trace, whatever context the caller runs in (e.g. a worker started from
    a request). Peer calls made inside it are its children; an exception is recorded on it and re-raised."""
    with _tracer.start_as_current_span(name, context=context.Context(), attributes=attributes) as span:
        yield span
