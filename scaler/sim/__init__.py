"""PD fleet simulator and KEDA/HPA emulator behind ``keda-otel-scaler demo``.

* :mod:`scaler.sim.scenario` — scenario YAML → typed, validated config.
* :mod:`scaler.sim.workload`, :mod:`scaler.sim.request`, :mod:`scaler.sim.engine`,
  :mod:`scaler.sim.fleet` — the simulated llm-d P/D deployment (arrivals, prompts and prefix
  caches, prefill and decode vLLM engines, gateway/EPP, pods and Deployments).
* :mod:`scaler.sim.vllm_metrics`, :mod:`scaler.sim.otlp_export` — per-pod vLLM metrics in a
  ``prometheus_client`` registry, converted to OTLP the way a collector's Prometheus
  receiver does and pushed over OTLP/gRPC.
* :mod:`scaler.sim.manifests`, :mod:`scaler.sim.hpa`, :mod:`scaler.sim.keda_emulator` —
  the repository's ScaledObjects, driven over real gRPC as KEDA and the HPA would.
* :mod:`scaler.sim.recorder`, :mod:`scaler.sim.report`, :mod:`scaler.sim.view` — output.
* :mod:`scaler.sim.scaler_process`, :mod:`scaler.sim.demo` — the scaler as a child process,
  and the entry point wiring everything together.
"""
