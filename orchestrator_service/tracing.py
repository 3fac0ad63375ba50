"""OpenTelemetry traces, when the optional extra is installed (`stepwatch[otel]`); otherwise
every call here does nothing.

Spans: each RPC (the gRPC instrumentation), each job, each step attempt and each batch of
children, with the job and step ids as attributes. The exporter is chosen by the standard
OTEL_* variables (OTEL_TRACES_EXPORTER=otlp|console|none, OTEL_EXPORTER_OTLP_ENDPOINT, ...),
or by whoever set a tracer provider before the server started (tests, embedding apps).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

__all__ = ["setup", "span", "start_span"]

log = logging.getLogger(__name__)

try:
    from opentelemetry import trace as _trace
except ImportError:  # the extra is not installed: tracing is off
    _trace = None  # type: ignore[assignment]

_instrumented = False
#: The tracer spans are made with, once setup() found a provider: until then (and with no
#: provider) a span is nothing at all, not a no-op span got through the API's proxies
#: (that cost ~10 % of the event loop's samples while 2,000 steps ran untraced).
_active: Any = None


def setup() -> None:
    """Before the gRPC server is made: configure the exporter from the environment unless a
    tracer provider is already set, and instrument the server only when spans go somewhere
    (with nothing to export, RPCs get no spans and cost nothing)."""
    global _active
    if _trace is None or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    provider_set = type(_trace.get_tracer_provider()).__name__ != "ProxyTracerProvider"
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "")
    asked = exporter_name not in ("", "none") or (
        not exporter_name and bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")))
    if not provider_set and asked:
        provider_set = _configure(exporter_name)
    if provider_set:
        _instrument()
        _active = _trace.get_tracer("stepwatch")


def _instrument() -> None:
    global _instrumented
    if _instrumented:
        return
    with contextlib.suppress(ImportError):
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorServer, filters

        # Health stays out: its Watch writes with context.write (not an async generator),
        # which the instrumentation's stream wrapper cannot iterate (UNKNOWN to probes).
        GrpcAioInstrumentorServer(
            filter_=filters.negate(filters.service_name("grpc.health.v1.Health"))).instrument()
        # A stream a client leaves is closed by grpc from another task: the interceptor's
        # detach of its context then fails and OpenTelemetry logs it as an ERROR with a
        # traceback, though the span ended. That one case is dropped; others are kept.
        logging.getLogger("opentelemetry.context").addFilter(_other_context_detach)
    _instrumented = True


def _other_context_detach(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return not (record.getMessage() == "Failed to detach context" and isinstance(exc, ValueError)
                and "was created in a different Context" in str(exc))


def _configure(exporter_name: str) -> bool:
    """A tracer provider exporting as the OTEL_* variables say; whether one was set."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("OTEL_* set but opentelemetry-sdk is not installed: no traces exported")
        return False
    exporter: Any
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("OTLP exporter not installed (pip install 'stepwatch[otel]')")
            return False
        exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", "stepwatch-orchestrator")}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _trace.set_tracer_provider(provider)
    return True


def _tracer() -> Any:
    return _active


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span around a block, the current one inside it (children nest under it)."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, attributes=_clean(attributes)) as s:
        yield s


def start_span(name: str, **attributes: Any) -> Any:
    """A span ended by the caller (``.end()``), for work that outlives a block."""
    tracer = _tracer()
    return tracer.start_span(name, attributes=_clean(attributes)) if tracer is not None else None


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {f"stepwatch.{k}": v for k, v in attributes.items() if v is not None}
