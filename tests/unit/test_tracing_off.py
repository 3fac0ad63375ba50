"""Untraced, a span is nothing at all; with a tracer provider set before the server
starts, the same calls make real spans."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from orchestrator_service import tracing


def test_no_provider_no_span_and_a_provider_real_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tracing, "_active", None)
    monkeypatch.setattr(tracing, "_instrumented", True)  # the gRPC instrumentation: not here
    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    tracing.setup()
    with tracing.span("stepwatch.step_attempt", step="a") as s:
        assert s is None
    assert tracing.start_span("stepwatch.child") is None

    provider = TracerProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    monkeypatch.setattr(trace, "get_tracer", provider.get_tracer)
    tracing.setup()
    with tracing.span("stepwatch.step_attempt", step="a", none=None) as s:
        assert s is not None and s.is_recording()
        assert dict(s.attributes) == {"stepwatch.step": "a"}
