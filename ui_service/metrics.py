"""The UI's own Prometheus metrics, at /metrics: pages open and stream reconnects."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

__all__ = ["PAGES_OPEN", "RECONNECTS", "REGISTRY", "render"]

REGISTRY = CollectorRegistry()
PAGES_OPEN = Gauge("stepwatch_ui_pages_open", "Browser tabs with a page open", ["page"],
                   registry=REGISTRY)
RECONNECTS = Counter("stepwatch_ui_stream_reconnects", "Watch streams retried after a break",
                     ["stream"], registry=REGISTRY)


def render() -> bytes:
    return generate_latest(REGISTRY)
