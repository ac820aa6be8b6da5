"""keda-otel-scaler: scale llm-d prefill and decode independently from OpenTelemetry metrics."""

__version__ = "0.1.0"
