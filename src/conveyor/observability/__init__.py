"""Observability: typed events and the event log (``events``), Prometheus metrics
(``metrics``, the ``[metrics]`` extra), OpenTelemetry tracing (``tracing``, the ``[otel]``
extra) and task-aware logging (``logging``). See docs/observability.md.

The core imports none of the optional libraries: each module that needs one imports it
itself, and only when you import that module.
"""

__all__: list[str] = []
