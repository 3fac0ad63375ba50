"""OpenTelemetry's "Failed to detach context" for a stream grpc closed from another task is
dropped (the span ended; the console of `make run` stays clean); every other record stays."""

from __future__ import annotations

import logging

from orchestrator_service.tracing import _other_context_detach


def record(message: str, exc: BaseException | None) -> logging.LogRecord:
    info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("opentelemetry.context", logging.ERROR, __file__, 1, message, None,
                             info)  # type: ignore[arg-type]


def test_only_the_other_context_detach_is_dropped() -> None:
    other = ValueError("<Token var=<ContextVar name='current_context'>> was created in a "
                       "different Context")
    assert _other_context_detach(record("Failed to detach context", other)) is False
    assert _other_context_detach(record("Failed to detach context", RuntimeError("x"))) is True
    assert _other_context_detach(record("something else", other)) is True
    assert _other_context_detach(record("Failed to detach context", None)) is True
