"""``taskiq.instrumentation``: ``TaskiqInstrumentor``, on Conveyor's OpenTelemetry
tracing (:class:`conveyor.observability.tracing.TracingHook`).

>>> TaskiqInstrumentor().instrument()           # every broker, made before or after
>>> TaskiqInstrumentor().instrument_broker(broker, tracer_provider=provider)  # doctest: +SKIP

A span per enqueue and per run, linked through the message (see docs/observability.md).
taskiq's instrumentor also sets up OpenTelemetry's auto-instrumentation in its worker
command; with Conveyor, configure the SDK in the worker's startup (``@app.on_startup``)
or with ``opentelemetry-instrument conveyor worker ...``. ``meter_provider`` is accepted
and not used: Conveyor's metrics are Prometheus' (docs/observability.md).
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any, ClassVar

from conveyor.compat.taskiq import brokers as _brokers
from conveyor.compat.taskiq.brokers import AsyncBroker

if TYPE_CHECKING:
    from conveyor.observability.tracing import TracingHook

__all__ = ["TaskiqInstrumentor"]

log = logging.getLogger("conveyor.compat.taskiq")


class TaskiqInstrumentor:
    """Traces taskiq brokers' sends and runs with OpenTelemetry."""

    _hooks: ClassVar[weakref.WeakKeyDictionary[AsyncBroker, TracingHook]] = (
        weakref.WeakKeyDictionary()
    )
    _instrumenting: ClassVar[bool] = False

    def instrument(self, **kwargs: Any) -> None:
        """Trace every broker: those made already and those made later."""
        TaskiqInstrumentor._instrumenting = True
        _brokers.on_new_broker(self._on_new_broker)
        for broker in list(_brokers.live_brokers()):
            self._on_new_broker(broker, kwargs.get("tracer_provider"))

    def uninstrument(self, **kwargs: Any) -> None:
        """Stop tracing every broker this instrumentor traced."""
        TaskiqInstrumentor._instrumenting = False
        for broker in list(self._hooks):
            self.uninstrument_broker(broker)

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        """``instrument()`` was called (and not undone)."""
        return TaskiqInstrumentor._instrumenting

    def instrument_broker(
        self,
        broker: AsyncBroker,
        tracer_provider: Any | None = None,
        meter_provider: Any | None = None,
    ) -> None:
        """Trace ``broker``'s sends and runs (once: a second call warns)."""
        if broker in self._hooks:
            log.warning("Attempting to instrument taskiq broker while already instrumented")
            return
        from conveyor.observability.tracing import TracingHook

        hook = TracingHook(tracer_provider)
        broker.conveyor.add_hook(hook)
        self._hooks[broker] = hook

    def uninstrument_broker(self, broker: AsyncBroker) -> None:
        """Stop tracing ``broker``."""
        hook = self._hooks.pop(broker, None)
        if hook is not None:
            broker.conveyor.hooks.remove(hook)

    def _on_new_broker(self, broker: AsyncBroker, tracer_provider: Any | None = None) -> None:
        if TaskiqInstrumentor._instrumenting and broker not in self._hooks:
            self.instrument_broker(broker, tracer_provider)
