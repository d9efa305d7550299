"""OpenTelemetry export, only when an OTLP endpoint is configured; the SDK already emits server spans."""

import logging

logger = logging.getLogger(__name__)
_configured = False


def configure_tracing(service_name: str, otlp_endpoint: str | None) -> None:
    """Install an OTLP/HTTP span exporter once per process; a no-op without an endpoint."""
    global _configured
    if otlp_endpoint is None or _configured:
        return
    # Optional heavy dependencies, imported only when export is wanted.
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)
    _configured = True
    logger.info("tracing export enabled", extra={"service": service_name})
